// Data-loading benchmark: SD1.5-size pairs (two 4x64x64 fp16 latents and a 77x768 fp16 prompt embedding
// per pair, each pair with its own prompt, so no embedding is shared) read from page cache through the
// dataset ABI and the host reader, shuffled, with background prefetch. Prints pairs/s against the target
// of 2,000 pairs/s on 2 cores (run it under `taskset -c 0,1`, as bench/data_read.sh does).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/hdf5_pairs_source.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/data/shard_writer.hpp"

using namespace prefdiff::data;

namespace {

void write_shards(const std::string& dir, uint64_t pairs, uint64_t shards, bool with_std) {
  ShardAttributes a;
  a.backbone_family = "sd15";
  a.latent_shape = {4, 64, 64};
  a.latent_scale_factor = 0.18215;
  a.vae_id = a.text_encoder_id = "bench";
  a.encoder = "bench-random";
  a.source_dataset = "bench";
  a.source_split = "train";
  a.writer = "bench/data_read";
  ShardLayout layout;
  layout.latent_std = with_std;
  std::vector<uint16_t> latent(4 * 64 * 64), embeds(77 * 768), std_dev(4 * 64 * 64, float_to_half(0.05f));
  for (size_t k = 0; k < latent.size(); ++k) latent[k] = float_to_half(static_cast<float>(k % 97) / 97.0f);
  for (size_t k = 0; k < embeds.size(); ++k) embeds[k] = float_to_half(static_cast<float>(k % 89) / 89.0f);
  uint64_t id = 0;
  for (uint64_t s = 0; s < shards; ++s) {
    ShardWriter writer(dir + "/bench-" + std::to_string(s) + ".h5", a, layout);
    writer.add_prompt("", embeds.data(), nullptr);
    for (uint64_t i = 0; i < pairs / shards; ++i, ++id) {
      PairRecord r;
      r.pair_id = id;
      r.prompt = writer.add_prompt("prompt " + std::to_string(id), embeds.data(), nullptr);
      latent[0] = static_cast<uint16_t>(id);  // rows differ
      r.latent_w = latent.data();
      r.latent_l = latent.data();
      r.latent_w_std = r.latent_l_std = with_std ? std_dev.data() : nullptr;
      writer.add_pair(r);
    }
    writer.close();
  }
}

double read_epoch(PairReader& reader, uint64_t epoch, uint64_t* pairs) {
  const auto begin = std::chrono::steady_clock::now();
  reader.start(epoch);
  PairBatch batch;
  *pairs = 0;
  while (reader.next(batch)) *pairs += batch.size();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

}  // namespace

int main(int argc, char** argv) {
  // Optional 4th argument "sample": shards with the VAE std, and the reader samples latents from it.
  const bool sample = argc > 4 && std::string(argv[4]) == "sample";
  const std::string dir = std::string(argc > 1 ? argv[1] : "/tmp/prefdiff-bench-data") + (sample ? "-std" : "");
  const uint64_t pairs = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 8000;
  const uint64_t batch_size = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 32;
  std::filesystem::create_directories(dir);
  if (!std::filesystem::exists(dir + "/bench-0.h5")) {
    std::printf("writing %llu SD1.5-size pairs to %s ...\n", static_cast<unsigned long long>(pairs), dir.c_str());
    write_shards(dir, pairs, 4, sample);
  }
  auto source = open_hdf5_pairs(dir + "/bench-*.h5");
  ReaderOptions o;
  o.seed = 1;
  o.batch_size = batch_size;
  o.prefetch = 4;
  o.caption_dropout = 0.2;
  o.tensors = {"latent_w", "latent_l", "prompt_embeds", "pair_id"};
  o.sample_latents = sample;
  PairReader reader(*source, o);
  const double bytes_per_pair = 2.0 * 4 * 64 * 64 * 2 + 77 * 768 * 2;
  uint64_t n = 0;
  read_epoch(reader, 0, &n);  // warms the page cache
  double best = 0;
  for (uint64_t epoch = 1; epoch <= 3; ++epoch) {
    const double seconds = read_epoch(reader, epoch, &n);
    const double rate = static_cast<double>(n) / seconds;
    best = rate > best ? rate : best;
    std::printf("epoch %llu: %llu pairs in %.3f s = %.0f pairs/s (%.0f MB/s), batch %llu, shuffled, prefetch 4%s\n",
                static_cast<unsigned long long>(epoch), static_cast<unsigned long long>(n), seconds, rate, rate * bytes_per_pair / 1e6,
                static_cast<unsigned long long>(batch_size), sample ? ", latents sampled from std" : "");
  }
  std::printf("best %.0f pairs/s; target 2000 pairs/s on 2 cores: %s\n", best, best >= 2000 ? "met" : "NOT met");
  return best >= 2000 ? 0 : 1;
}
