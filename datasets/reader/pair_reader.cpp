#include "prefdiff/data/pair_reader.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "prefdiff/data/half.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::data {

namespace {

using prefdiff::sdk::hash_uniform;
using prefdiff::sdk::mix64;

// Hash streams of the reader's random choices (distinct from the noise injectors').
constexpr uint64_t kShuffleStream = 0x73687566666c6531ull;  // "shuffle1"
constexpr uint64_t kDropoutStream = 0x64726f706f757431ull;  // "dropout1"
constexpr uint64_t kLatentStream = 0x6c6174656e747331ull;   // "latents1"
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

// Uniform integer in [0, n) from 64 random bits (Lemire's multiply-shift).
uint64_t bounded(uint64_t bits, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(bits) * n) >> 64);
}

// Fisher-Yates with counter-based randomness: the permutation depends only on (n, seed, epoch), not on the
// platform's std::shuffle or on how many batches were read before.
std::vector<uint64_t> permutation(uint64_t n, uint64_t seed, uint64_t epoch) {
  std::vector<uint64_t> p(n);
  std::iota(p.begin(), p.end(), uint64_t{0});
  const uint64_t base = mix64(mix64(seed ^ kShuffleStream) ^ epoch);
  for (uint64_t i = n; i > 1; --i) std::swap(p[i - 1], p[bounded(mix64(base + i * kGamma), i)]);
  return p;
}

void swap_rows(HostTensor& t, size_t i) {
  // Rows of a [2, ...] per-pair tensor (time ids: winner row, loser row).
  const size_t half = t.row_bytes / 2;
  uint8_t* row = t.data.data() + i * t.row_bytes;
  std::swap_ranges(row, row + half, row + half);
}

void swap_between(HostTensor& a, HostTensor& b, size_t i) {
  std::swap_ranges(a.data.data() + i * a.row_bytes, a.data.data() + (i + 1) * a.row_bytes, b.data.data() + i * b.row_bytes);
}

}  // namespace

const HostTensor& PairBatch::tensor(const std::string& name) const {
  for (const HostTensor& t : tensors)
    if (t.name == name) return t;
  std::string names;
  for (const HostTensor& t : tensors) names += (names.empty() ? "" : ", ") + t.name;
  throw std::out_of_range("batch has no tensor '" + name + "'; it holds: " + names);
}

bool PairBatch::has(const std::string& name) const {
  for (const HostTensor& t : tensors)
    if (t.name == name) return true;
  return false;
}

double PairBatch::flip_fraction() const {
  if (flipped.empty()) return 0.0;
  size_t n = 0;
  for (uint8_t f : flipped) n += f != 0 ? 1u : 0u;
  return static_cast<double>(n) / static_cast<double>(flipped.size());
}

struct PairReader::Impl {
  instance::DataSource& source;
  ReaderOptions options;
  std::vector<uint64_t> pair_ids;        // by data set index
  std::vector<std::string> read_names;   // tensors asked of the source
  std::vector<std::string> keep_names;   // tensors handed to the trainer
  uint64_t batches = 0;

  // Epoch state.
  uint64_t epoch = 0;
  std::vector<uint64_t> order;
  uint64_t next_batch = 0;  // synchronous mode
  bool started = false;

  // Prefetch state.
  std::thread worker;
  std::mutex mutex;
  std::condition_variable changed;
  std::deque<PairBatch> queue;
  std::exception_ptr failure;
  bool worker_done = false;
  bool stop = false;
  double waited = 0.0;

  Impl(instance::DataSource& s, ReaderOptions o) : source(s), options(std::move(o)) {}

  uint64_t usable() const {
    const uint64_t n = source.pair_count();
    const uint64_t global = options.batch_size * static_cast<uint64_t>(options.world_size);
    return options.drop_last ? n / global * global : n;
  }

  std::vector<uint64_t> rank_order(uint64_t e) const {
    const uint64_t n = source.pair_count();
    std::vector<uint64_t> all = options.shuffle ? permutation(n, options.seed, e) : std::vector<uint64_t>();
    if (!options.shuffle) {
      all.resize(n);
      std::iota(all.begin(), all.end(), uint64_t{0});
    }
    std::vector<uint64_t> mine;
    const uint64_t limit = usable(), w = static_cast<uint64_t>(options.world_size);
    mine.reserve(limit / w + 1);
    for (uint64_t i = static_cast<uint64_t>(options.rank); i < limit; i += w) mine.push_back(all[i]);
    return mine;
  }

  void sample(HostTensor& mean, const HostTensor& std_dev, size_t i, uint64_t pair_id, uint64_t which) const {
    const size_t n = mean.row_bytes / prefdiff::sdk::dtype_size(mean.dtype);
    const uint64_t base = mix64(mix64(mix64(options.seed ^ kLatentStream) ^ epoch) ^ pair_id) ^ which;
    const bool half = mean.dtype == PD_DTYPE_F16;
    for (size_t k = 0; k < n; k += 2) {
      // Box-Muller: two normals from two uniforms in (0, 1].
      const double u1 = (static_cast<double>(mix64(base + (k + 1) * kGamma) >> 11) + 1.0) * 0x1.0p-53;
      const double u2 = static_cast<double>(mix64(base + (k + 2) * kGamma) >> 11) * 0x1.0p-53;
      const double r = std::sqrt(-2.0 * std::log(u1));
      const double z[2] = {r * std::cos(6.283185307179586 * u2), r * std::sin(6.283185307179586 * u2)};
      for (size_t j = 0; j < 2 && k + j < n; ++j) {
        const size_t e = i * n + k + j;
        if (half) {
          uint16_t* m = mean.as<uint16_t>();
          const float value = half_to_float(m[e]) + half_to_float(std_dev.as<uint16_t>()[e]) * static_cast<float>(z[j]);
          m[e] = float_to_half(value);
        } else {
          mean.as<float>()[e] += std_dev.as<float>()[e] * static_cast<float>(z[j]);
        }
      }
    }
  }

  PairBatch make_batch(uint64_t b) {
    PairBatch batch;
    batch.epoch = epoch;
    batch.index = b;
    const uint64_t first = b * options.batch_size;
    const uint64_t last = std::min<uint64_t>(first + options.batch_size, order.size());
    batch.indices.assign(order.begin() + static_cast<std::ptrdiff_t>(first), order.begin() + static_cast<std::ptrdiff_t>(last));
    const size_t count = batch.indices.size();
    batch.pair_ids.resize(count);
    batch.caption_dropped.assign(count, 0);
    batch.flipped.assign(count, 0);
    for (size_t i = 0; i < count; ++i) {
      batch.pair_ids[i] = pair_ids[batch.indices[i]];
      if (options.caption_dropout > 0.0)
        batch.caption_dropped[i] = hash_uniform(options.seed, batch.pair_ids[i], kDropoutStream + epoch) < options.caption_dropout;
      if (options.flips != nullptr) batch.flipped[i] = options.flips->flipped(batch.indices[i]) ? 1 : 0;
    }
    std::vector<instance::DataSource::Output> outputs;
    batch.tensors.resize(read_names.size());
    for (size_t t = 0; t < read_names.size(); ++t) {
      const prefdiff::sdk::TensorSpec& spec = *source.find(read_names[t]);
      HostTensor& h = batch.tensors[t];
      h.name = spec.name;
      h.dtype = spec.dtype;
      h.shape.assign(1, static_cast<int64_t>(count));
      h.shape.insert(h.shape.end(), spec.shape.begin(), spec.shape.end());
      h.row_bytes = spec.row_bytes();
      h.data.resize(h.row_bytes * count);
      outputs.push_back({h.name, h.data.data(), h.data.size()});
    }
    source.read(batch.indices.data(), count, batch.caption_dropped.data(), outputs);

    auto find = [&](const char* name) -> HostTensor* {
      for (HostTensor& t : batch.tensors)
        if (t.name == name) return &t;
      return nullptr;
    };
    if (options.sample_latents)
      for (size_t i = 0; i < count; ++i) {
        sample(*find("latent_w"), *find("latent_w_std"), i, batch.pair_ids[i], 0);
        sample(*find("latent_l"), *find("latent_l_std"), i, batch.pair_ids[i], 1);
      }
    // Label noise: a flipped pair presents its loser as the winner.
    HostTensor *w = find("latent_w"), *l = find("latent_l"), *ws = find("latent_w_std"), *ls = find("latent_l_std"),
               *time_ids = find("time_ids");
    for (size_t i = 0; i < count; ++i) {
      if (!batch.flipped[i]) continue;
      if (w && l) swap_between(*w, *l, i);
      if (ws && ls) swap_between(*ws, *ls, i);
      if (time_ids) swap_rows(*time_ids, i);
    }
    if (keep_names.size() != read_names.size()) {
      std::vector<HostTensor> kept;
      for (HostTensor& t : batch.tensors)
        if (std::find(keep_names.begin(), keep_names.end(), t.name) != keep_names.end()) kept.push_back(std::move(t));
      batch.tensors = std::move(kept);
    }
    return batch;
  }

  void run(uint64_t first_batch) {
    for (uint64_t b = first_batch; b < batches; ++b) {
      {
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait(lock, [&] { return stop || queue.size() < options.prefetch; });
        if (stop) return;
      }
      PairBatch batch;
      try {
        batch = make_batch(b);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        failure = std::current_exception();
        worker_done = true;
        changed.notify_all();
        return;
      }
      std::lock_guard<std::mutex> lock(mutex);
      queue.push_back(std::move(batch));
      changed.notify_all();
    }
    std::lock_guard<std::mutex> lock(mutex);
    worker_done = true;
    changed.notify_all();
  }

  void halt() {
    if (worker.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        stop = true;
        changed.notify_all();
      }
      worker.join();
    }
    queue.clear();
    failure = nullptr;
    stop = false;
    worker_done = false;
  }
};

PairReader::PairReader(instance::DataSource& source, ReaderOptions options) : impl_(std::make_unique<Impl>(source, std::move(options))) {
  Impl& s = *impl_;
  const ReaderOptions& o = s.options;
  const std::string where = "data reader on " + source.label();
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw std::invalid_argument(where + ": rank " + std::to_string(o.rank) + " is not in [0, world_size = " + std::to_string(o.world_size) + ")");
  if (o.batch_size == 0) throw std::invalid_argument(where + ": batch_size must be positive");
  if (!(o.caption_dropout >= 0.0 && o.caption_dropout <= 1.0))
    throw std::invalid_argument(where + ": caption_dropout = " + std::to_string(o.caption_dropout) + " is outside [0, 1]");
  if (o.flips != nullptr && o.flips->size() != source.pair_count())
    throw std::invalid_argument(where + ": the flip table covers " + std::to_string(o.flips->size()) + " pairs, the data set has " +
                                std::to_string(source.pair_count()));
  for (const char* required : {"latent_w", "latent_l", "pair_id"})
    if (source.find(required) == nullptr)
      throw std::invalid_argument(where + ": the source serves no '" + std::string(required) + "' tensor");

  s.keep_names = o.tensors;
  if (s.keep_names.empty())
    for (const auto& t : source.tensors())
      if (t.name != "latent_w_std" && t.name != "latent_l_std") s.keep_names.push_back(t.name);
  for (const std::string& name : s.keep_names)
    if (source.find(name) == nullptr) {
      std::string known;
      for (const auto& t : source.tensors()) known += (known.empty() ? "" : ", ") + t.name;
      throw std::invalid_argument(where + ": unknown tensor '" + name + "'; the source serves: " + known);
    }
  s.read_names = s.keep_names;
  if (o.sample_latents) {
    for (const char* name : {"latent_w", "latent_l", "latent_w_std", "latent_l_std"}) {
      if (source.find(name) == nullptr)
        throw std::invalid_argument(where + ": sample_latents needs '" + std::string(name) +
                                    "', which the data set does not store. HINT: set data.sample_latents = false, or re-import "
                                    "with the VAE posterior std");
      if (std::find(s.read_names.begin(), s.read_names.end(), name) == s.read_names.end()) s.read_names.push_back(name);
    }
  }

  const uint64_t global = o.batch_size * static_cast<uint64_t>(o.world_size);
  if (o.drop_last && source.pair_count() < global)
    throw std::invalid_argument(where + ": " + std::to_string(source.pair_count()) + " pairs are fewer than one global batch (batch_size " +
                                std::to_string(o.batch_size) + " x world_size " + std::to_string(o.world_size) + ")");
  const uint64_t per_rank = o.drop_last ? s.usable() / static_cast<uint64_t>(o.world_size)
                                        : (s.usable() + static_cast<uint64_t>(o.world_size) - 1) / static_cast<uint64_t>(o.world_size);
  s.batches = (per_rank + o.batch_size - 1) / o.batch_size;

  // Pair ids of every pair: caption dropout is keyed by them and must be decided before a read.
  const uint64_t n = source.pair_count();
  s.pair_ids.resize(n);
  constexpr uint64_t kBlock = 65536;
  std::vector<uint64_t> indices;
  for (uint64_t first = 0; first < n; first += kBlock) {
    const uint64_t count = std::min(kBlock, n - first);
    indices.resize(count);
    std::iota(indices.begin(), indices.end(), first);
    source.read(indices.data(), count, nullptr, {{"pair_id", s.pair_ids.data() + first, count * sizeof(uint64_t)}});
  }
}

PairReader::~PairReader() { impl_->halt(); }

uint64_t PairReader::pair_count() const { return impl_->source.pair_count(); }
uint64_t PairReader::batches_per_epoch() const { return impl_->batches; }
std::vector<uint64_t> PairReader::epoch_indices(uint64_t epoch) const { return impl_->rank_order(epoch); }

void PairReader::start(uint64_t epoch, uint64_t first_batch) {
  Impl& s = *impl_;
  s.halt();
  if (first_batch > s.batches)
    throw std::invalid_argument("data reader: resume batch " + std::to_string(first_batch) + " is past the epoch's " +
                                std::to_string(s.batches) + " batches");
  s.epoch = epoch;
  s.order = s.rank_order(epoch);
  s.next_batch = first_batch;
  s.started = true;
  if (s.options.prefetch > 0) s.worker = std::thread([&s, first_batch] { s.run(first_batch); });
}

bool PairReader::next(PairBatch& batch) {
  Impl& s = *impl_;
  if (!s.started) throw std::logic_error("data reader: call start(epoch) before next()");
  const auto begin = std::chrono::steady_clock::now();
  auto account = [&] { s.waited += std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count(); };
  if (s.options.prefetch == 0) {
    if (s.next_batch >= s.batches) return false;
    batch = s.make_batch(s.next_batch++);
    account();
    return true;
  }
  std::unique_lock<std::mutex> lock(s.mutex);
  s.changed.wait(lock, [&] { return !s.queue.empty() || s.worker_done; });
  account();
  if (!s.queue.empty()) {
    batch = std::move(s.queue.front());
    s.queue.pop_front();
    s.changed.notify_all();
    return true;
  }
  if (s.failure) std::rethrow_exception(s.failure);
  return false;
}

double PairReader::wait_seconds() const { return impl_->waited; }

}  // namespace prefdiff::data
