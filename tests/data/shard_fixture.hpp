// Test shards with known contents: every value written is kept in memory, so reads are compared with
// exactly what went in, byte for byte.
#ifndef PREFDIFF_TESTS_DATA_SHARD_FIXTURE_HPP
#define PREFDIFF_TESTS_DATA_SHARD_FIXTURE_HPP

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/shard_writer.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::test {

// A fresh folder under the system temp dir, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "prefdiff-data-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct ShardSpec {
  uint64_t pairs = 40;
  int64_t prompts = 6;              // captions besides the empty prompt
  uint64_t first_id = 1000;         // pair ids: mix64(first_id + i)
  std::string family = "tiny";
  std::vector<int64_t> latent_shape{4, 4, 4};
  int64_t tokens = 5, dim = 8, pooled = 6;
  bool std_dev = true, time_ids = true;
  uint64_t salt = 0;                // changes the values
};

struct ShardContents {
  std::string path;
  std::vector<uint64_t> pair_ids;
  std::vector<int64_t> prompt;                         // row per pair
  std::vector<std::vector<uint16_t>> w, l, w_std, l_std; // per pair
  std::vector<std::vector<float>> time_ids;            // 12 per pair
  std::vector<std::vector<uint16_t>> embeds, pooled;   // per prompt row (row 0 = "")
  std::vector<std::string> captions;
  std::vector<double> margin;
  int64_t empty_row = 0;
};

inline uint16_t test_half(uint64_t a, uint64_t b) {
  return prefdiff::data::float_to_half(static_cast<float>(prefdiff::sdk::hash_uniform(a, b) * 4.0 - 2.0));
}

inline ShardContents write_test_shard(const std::string& path, const ShardSpec& spec = ShardSpec()) {
  prefdiff::data::ShardAttributes attributes;
  attributes.backbone_family = spec.family;
  attributes.latent_shape = spec.latent_shape;
  attributes.latent_scale_factor = 0.18215;
  attributes.vae_id = "test-vae";
  attributes.text_encoder_id = "test-te";
  attributes.encoder = "test-fixture";
  attributes.source_dataset = "fixture";
  attributes.source_split = "train";
  attributes.writer = "tests/data";
  prefdiff::data::ShardLayout layout;
  layout.latent_std = spec.std_dev;
  layout.embed_tokens = spec.tokens;
  layout.embed_dim = spec.dim;
  layout.pooled_dim = spec.pooled;
  layout.time_ids = spec.time_ids;
  layout.meta_columns = {"margin"};
  layout.text_columns = {"note"};
  ShardContents c;
  c.path = path;
  prefdiff::data::ShardWriter writer(path, attributes, layout);
  const size_t latent = static_cast<size_t>(spec.latent_shape[0] * spec.latent_shape[1] * spec.latent_shape[2]);
  for (int64_t p = 0; p <= spec.prompts; ++p) {
    const std::string caption = p == 0 ? "" : "caption " + std::to_string(p) + " salt " + std::to_string(spec.salt);
    std::vector<uint16_t> e(static_cast<size_t>(spec.tokens * spec.dim)), q(static_cast<size_t>(spec.pooled));
    for (size_t k = 0; k < e.size(); ++k) e[k] = test_half(spec.salt + 100 + static_cast<uint64_t>(p), k);
    for (size_t k = 0; k < q.size(); ++k) q[k] = test_half(spec.salt + 200 + static_cast<uint64_t>(p), k);
    const int64_t row = writer.add_prompt(caption, e.data(), spec.pooled > 0 ? q.data() : nullptr);
    if (row != p) throw std::logic_error("unexpected prompt row");
    c.embeds.push_back(e);
    c.pooled.push_back(q);
    c.captions.push_back(caption);
  }
  for (uint64_t i = 0; i < spec.pairs; ++i) {
    const uint64_t id = prefdiff::sdk::mix64(spec.first_id + i);
    std::vector<uint16_t> w(latent), l(latent), ws(latent), ls(latent);
    for (size_t k = 0; k < latent; ++k) {
      w[k] = test_half(id, k);
      l[k] = test_half(id ^ 0x55, k);
      ws[k] = prefdiff::data::float_to_half(0.05f);
      ls[k] = prefdiff::data::float_to_half(0.1f);
    }
    std::vector<float> t(12);
    for (int k = 0; k < 12; ++k) t[k] = static_cast<float>(k < 6 ? 512 + k : 1024 + k);
    prefdiff::data::PairRecord r;
    r.pair_id = id;
    r.prompt = 1 + static_cast<int64_t>(i % static_cast<uint64_t>(spec.prompts));
    r.latent_w = w.data();
    r.latent_l = l.data();
    r.latent_w_std = spec.std_dev ? ws.data() : nullptr;
    r.latent_l_std = spec.std_dev ? ls.data() : nullptr;
    r.time_ids = spec.time_ids ? t.data() : nullptr;
    r.meta = {static_cast<double>(i % 4)};
    r.text = {"note " + std::to_string(i)};
    writer.add_pair(r);
    c.pair_ids.push_back(id);
    c.prompt.push_back(r.prompt);
    c.w.push_back(w);
    c.l.push_back(l);
    c.w_std.push_back(ws);
    c.l_std.push_back(ls);
    c.time_ids.push_back(t);
    c.margin.push_back(r.meta[0]);
  }
  writer.close();
  return c;
}

}  // namespace prefdiff::test

#endif  // PREFDIFF_TESTS_DATA_SHARD_FIXTURE_HPP
