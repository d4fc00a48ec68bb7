// The world's generative parts: counter-based draws, smooth mode patterns, the oracle, pairs.
#include <algorithm>
#include <cmath>
#include <string>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/stable_id.hpp"
#include "prefdiff/sdk.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr double kTwoPow53 = 1.0 / 9007199254740992.0;  // 2^-53
constexpr int kComponentsPerChannel = 4;                 // cosines summed per channel of a pattern
constexpr int64_t kMaxFrequency = 2;                     // cycles per side: smooth at 8x8 and 16x16

// A smooth pattern C x h x w: per channel a sum of low-frequency 2-D cosines with N(0,1) amplitudes and
// uniform phases, scaled to the given per-element RMS.
std::vector<float> smooth_pattern(const CounterRng& rng, int64_t channels, int64_t size, double rms) {
  std::vector<double> v(static_cast<size_t>(channels * size * size), 0.0);
  uint64_t draw = 0;
  for (int64_t c = 0; c < channels; ++c) {
    for (int j = 0; j < kComponentsPerChannel; ++j) {
      const double amplitude = rng.normal(draw++);
      const double phase = kTwoPi * rng.uniform(1000000 + draw++);
      const int64_t fx = static_cast<int64_t>(rng.uniform(2000000 + draw++) * (kMaxFrequency + 1));
      const int64_t fy = static_cast<int64_t>(rng.uniform(3000000 + draw++) * (kMaxFrequency + 1));
      for (int64_t y = 0; y < size; ++y)
        for (int64_t x = 0; x < size; ++x)
          v[static_cast<size_t>((c * size + y) * size + x)] +=
              amplitude * std::cos(kTwoPi * static_cast<double>(fx * x + fy * y) / static_cast<double>(size) + phase);
    }
  }
  double sq = 0.0;
  for (double e : v) sq += e * e;
  const double current = std::sqrt(sq / static_cast<double>(v.size()));
  // A degenerate draw (all amplitudes ~0) cannot be rescaled; it has probability ~0 but stay defined.
  const double factor = current > 1e-12 ? rms / current : 0.0;
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i] * factor);
  return out;
}

}  // namespace

CounterRng::CounterRng(uint64_t seed, uint64_t stream)
    : key_(sdk::mix64(sdk::mix64(seed ^ 0x746f792d776f726cull) ^ (stream * 0xD1B54A32D192ED03ull))) {}

uint64_t CounterRng::bits(uint64_t index) const { return sdk::mix64(key_ ^ sdk::mix64(index + 0x9E3779B97F4A7C15ull)); }

double CounterRng::uniform(uint64_t index) const { return static_cast<double>(bits(index) >> 11) * kTwoPow53; }

double CounterRng::normal(uint64_t index) const {
  const double u1 = static_cast<double>((bits(2 * index) >> 11) + 1) * kTwoPow53;  // (0, 1]: log is finite
  const double u2 = static_cast<double>(bits(2 * index + 1) >> 11) * kTwoPow53;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

uint64_t stream_id(const char* label, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t h = data::stable_id({std::string_view(label)});
  h = sdk::mix64(h ^ a);
  h = sdk::mix64(h ^ (b * 0x9E3779B97F4A7C15ull));
  return sdk::mix64(h ^ (c * 0xC2B2AE3D27D4EB4Full));
}

World::World(WorldConfig config) : config_(std::move(config)), numel_(config_.latent_numel()) {
  const WorldConfig& c = config_;
  if (c.heldout_prompts >= c.prompts)
    throw WorldError("toy-world: heldout_prompts = " + std::to_string(c.heldout_prompts) + " must be below prompts = " +
                     std::to_string(c.prompts));
  const int64_t tokens = c.embed_tokens * c.embed_dim;
  null_embedding_.assign(static_cast<size_t>(tokens), 0.0f);
  for (int64_t k = 0; k < c.prompts; ++k) {
    // Rounded through float16 so the values in memory equal what a shard stores.
    const CounterRng rng(c.seed, stream_id("prompt", static_cast<uint64_t>(k)));
    std::vector<float> e(static_cast<size_t>(tokens));
    for (int64_t i = 0; i < tokens; ++i)
      e[static_cast<size_t>(i)] = data::half_to_float(data::float_to_half(static_cast<float>(rng.normal(static_cast<uint64_t>(i)))));
    embeddings_.push_back(std::move(e));

    std::vector<std::vector<float>> means;
    for (int64_t m = 0; m < c.modes; ++m)
      means.push_back(smooth_pattern(CounterRng(c.seed, stream_id("mode", static_cast<uint64_t>(k), static_cast<uint64_t>(m))),
                                     c.latent_channels, c.latent_size, c.mode_scale));
    means_.push_back(std::move(means));

    const CounterRng wrng(c.seed, stream_id("weights", static_cast<uint64_t>(k)));
    std::vector<double> w(static_cast<size_t>(c.modes));
    double total = 0.0;
    for (int64_t m = 0; m < c.modes; ++m) total += (w[static_cast<size_t>(m)] = std::exp(c.mode_weight_spread * wrng.normal(static_cast<uint64_t>(m))));
    for (double& x : w) x /= total;
    weights_.push_back(std::move(w));

    const CounterRng brng(c.seed, stream_id("best", static_cast<uint64_t>(k)));
    best_.push_back(std::min<int64_t>(c.modes - 1, static_cast<int64_t>(brng.uniform(0) * static_cast<double>(c.modes))));
  }
  // One preferred direction for all prompts: the within-mode preference a policy can carry over to
  // held-out prompts (like an aesthetic preference that does not depend on the caption).
  direction_ = smooth_pattern(CounterRng(c.seed, stream_id("direction")), c.latent_channels, c.latent_size, 1.0);
  double sq = 0.0;
  for (float v : direction_) sq += static_cast<double>(v) * v;
  const double norm = std::sqrt(sq);
  for (float& v : direction_) v = static_cast<float>(v / norm);
  const double offset = c.target_offset * c.noise_std * std::sqrt(static_cast<double>(numel_));
  for (int64_t k = 0; k < c.prompts; ++k) {
    const std::vector<float>& mu = means_[static_cast<size_t>(k)][static_cast<size_t>(best_[static_cast<size_t>(k)])];
    std::vector<float> t(mu.size());
    for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(static_cast<double>(mu[i]) + offset * direction_[i]);
    targets_.push_back(std::move(t));
  }
}

std::vector<int64_t> World::latent_shape() const {
  return {config_.latent_channels, config_.latent_size, config_.latent_size};
}

bool World::is_heldout(int64_t prompt) const { return prompt >= config_.prompts - config_.heldout_prompts; }

std::vector<int64_t> World::train_prompts() const {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < config_.prompts; ++k)
    if (!is_heldout(k)) out.push_back(k);
  return out;
}

std::vector<int64_t> World::heldout_prompts() const {
  std::vector<int64_t> out;
  for (int64_t k = 0; k < config_.prompts; ++k)
    if (is_heldout(k)) out.push_back(k);
  return out;
}

static void check_prompt(int64_t prompt, int64_t count) {
  if (prompt < 0 || prompt >= count)
    throw WorldError("toy-world: prompt " + std::to_string(prompt) + " is out of range [0, " + std::to_string(count) + ")");
}

const std::vector<float>& World::prompt_embedding(int64_t prompt) const {
  check_prompt(prompt, config_.prompts);
  return embeddings_[static_cast<size_t>(prompt)];
}

std::string World::prompt_text(int64_t prompt) const {
  check_prompt(prompt, config_.prompts);
  return "toy-world prompt " + std::to_string(prompt);
}

const std::vector<float>& World::mode_mean(int64_t prompt, int64_t mode) const {
  check_prompt(prompt, config_.prompts);
  if (mode < 0 || mode >= config_.modes)
    throw WorldError("toy-world: mode " + std::to_string(mode) + " is out of range [0, " + std::to_string(config_.modes) + ")");
  return means_[static_cast<size_t>(prompt)][static_cast<size_t>(mode)];
}

const std::vector<double>& World::mode_weights(int64_t prompt) const {
  check_prompt(prompt, config_.prompts);
  return weights_[static_cast<size_t>(prompt)];
}

int64_t World::best_mode(int64_t prompt) const {
  check_prompt(prompt, config_.prompts);
  return best_[static_cast<size_t>(prompt)];
}

const std::vector<float>& World::target(int64_t prompt) const {
  check_prompt(prompt, config_.prompts);
  return targets_[static_cast<size_t>(prompt)];
}

double World::reward(int64_t prompt, const float* x) const {
  const std::vector<float>& t = target(prompt);
  double sum = 0.0;
  for (int64_t i = 0; i < numel_; ++i) {
    const double d = static_cast<double>(x[i]) - static_cast<double>(t[static_cast<size_t>(i)]);
    sum += d * d;
  }
  return -sum / static_cast<double>(numel_);
}

int64_t World::nearest_mode(int64_t prompt, const float* x, double* mean_sq_distance) const {
  check_prompt(prompt, config_.prompts);
  int64_t best = 0;
  double best_d = 0.0;
  for (int64_t m = 0; m < config_.modes; ++m) {
    const std::vector<float>& mu = means_[static_cast<size_t>(prompt)][static_cast<size_t>(m)];
    double d = 0.0;
    for (int64_t i = 0; i < numel_; ++i) {
      const double e = static_cast<double>(x[i]) - static_cast<double>(mu[static_cast<size_t>(i)]);
      d += e * e;
    }
    if (m == 0 || d < best_d) {
      best = m;
      best_d = d;
    }
  }
  if (mean_sq_distance) *mean_sq_distance = best_d / static_cast<double>(numel_);
  return best;
}

int64_t World::sample_base(int64_t prompt, uint64_t stream, uint64_t index, float* out) const {
  const std::vector<double>& w = mode_weights(prompt);
  const CounterRng pick(config_.seed, stream_id("base-mode", stream, index));
  const double u = pick.uniform(0);
  int64_t mode = config_.modes - 1;  // rounding can leave u above the last partial sum
  double cumulative = 0.0;
  for (int64_t m = 0; m < config_.modes; ++m) {
    cumulative += w[static_cast<size_t>(m)];
    if (u < cumulative) {
      mode = m;
      break;
    }
  }
  const std::vector<float>& mu = means_[static_cast<size_t>(prompt)][static_cast<size_t>(mode)];
  const CounterRng noise(config_.seed, stream_id("base-noise", stream, index));
  for (int64_t i = 0; i < numel_; ++i)
    out[i] = static_cast<float>(static_cast<double>(mu[static_cast<size_t>(i)]) + config_.noise_std * noise.normal(static_cast<uint64_t>(i)));
  return mode;
}

void World::standard_normal(uint64_t stream, uint64_t index, float* out) const {
  const CounterRng rng(config_.seed, stream_id("standard-normal", stream, index));
  for (int64_t i = 0; i < numel_; ++i) out[i] = static_cast<float>(rng.normal(static_cast<uint64_t>(i)));
}

bool World::a_wins(double reward_a, double reward_b, double temperature, uint64_t pair_id) const {
  if (!(temperature > 0.0)) return reward_a >= reward_b;
  const double p = 1.0 / (1.0 + std::exp(-(reward_a - reward_b) / temperature));
  return CounterRng(config_.seed, stream_id("bradley-terry", config_.pair_seed)).uniform(pair_id) < p;
}

uint64_t World::pair_id(const char* split, int64_t index) const {
  // Train ids depend on the pair seed (a new draw is a new data set); held-out ids only on the world.
  const bool train = std::string(split) == "train";
  return data::stable_id({"toy-world", std::to_string(config_.seed), split,
                          train ? std::to_string(config_.pair_seed) : std::string(), std::to_string(index)});
}

int64_t World::train_pair_prompt(int64_t index) const {
  // train_prompts() is 0 .. prompts - heldout_prompts - 1 (held-out prompts are the last ones), so its
  // element at index % size is that number: no list per pair.
  return index % (config_.prompts - config_.heldout_prompts);
}

Pair World::make_pair(uint64_t id, int64_t prompt, const float* a, const float* b, int64_t mode_a, int64_t mode_b,
                      double temperature) const {
  const double ra = reward(prompt, a);
  const double rb = reward(prompt, b);
  const bool a_first = a_wins(ra, rb, temperature, id);
  Pair p;
  p.pair_id = id;
  p.prompt = prompt;
  const float* w = a_first ? a : b;
  const float* l = a_first ? b : a;
  p.latent_w.assign(w, w + numel_);
  p.latent_l.assign(l, l + numel_);
  p.reward_w = a_first ? ra : rb;
  p.reward_l = a_first ? rb : ra;
  p.mode_w = a_first ? mode_a : mode_b;
  p.mode_l = a_first ? mode_b : mode_a;
  return p;
}

std::vector<Pair> World::base_train_pairs() const {
  std::vector<Pair> pairs;
  pairs.reserve(static_cast<size_t>(config_.train_pairs));
  std::vector<float> a(static_cast<size_t>(numel_)), b(static_cast<size_t>(numel_));
  const uint64_t stream = stream_id("train-pair", config_.pair_seed);
  for (int64_t i = 0; i < config_.train_pairs; ++i) {
    const int64_t k = train_pair_prompt(i);
    const int64_t ma = sample_base(k, stream, static_cast<uint64_t>(2 * i), a.data());
    const int64_t mb = sample_base(k, stream, static_cast<uint64_t>(2 * i + 1), b.data());
    pairs.push_back(make_pair(pair_id("train", i), k, a.data(), b.data(), ma, mb, config_.bt_temperature));
  }
  return pairs;
}

std::vector<Pair> World::heldout_pairs() const {
  std::vector<Pair> pairs;
  pairs.reserve(static_cast<size_t>(config_.heldout_pairs));
  std::vector<float> a(static_cast<size_t>(numel_)), b(static_cast<size_t>(numel_));
  const uint64_t stream = stream_id("heldout-pair");
  for (int64_t i = 0; i < config_.heldout_pairs; ++i) {
    const int64_t k = i % config_.prompts;
    const int64_t ma = sample_base(k, stream, static_cast<uint64_t>(2 * i), a.data());
    const int64_t mb = sample_base(k, stream, static_cast<uint64_t>(2 * i + 1), b.data());
    pairs.push_back(make_pair(pair_id("heldout", i), k, a.data(), b.data(), ma, mb, 0.0));
  }
  return pairs;
}

}  // namespace prefdiff::toy
