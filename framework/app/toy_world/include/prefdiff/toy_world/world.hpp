// The synthetic preference world (docs/toy-world.md): prompts, a multi-mode base distribution per prompt,
// a closed-form oracle reward and preference pairs drawn from it, all derived from seeds through a
// counter-based generator, so that a world is the same bit for bit on every run and every machine.
//
// Torch-free: the world is plain float vectors. The reference model, caching and evaluation live in
// prepare.hpp / evaluate.hpp.
#ifndef PREFDIFF_TOY_WORLD_WORLD_HPP
#define PREFDIFF_TOY_WORLD_WORLD_HPP

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/instance/params.hpp"

namespace prefdiff::toy {

using instance::ParamSpec;
using instance::ValueType;

// Bumped whenever generation, pretraining or pair drawing changes what a config produces: it is part
// of every cache key, so stale cached worlds are never reused.
constexpr const char* kCodeVersion = "toy-world-1";
constexpr const char* kDataId = "toy-world";

class WorldError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The recipe's [data] section for id = "toy-world". Key names and defaults are documented in
// docs/toy-world.md and in world_schema() (the one table both validation and docs use).
struct WorldConfig {
  // The world itself.
  uint64_t seed = 0;                 // everything below (prompts, modes, oracle) derives from it
  int64_t prompts = 8;               // K
  int64_t heldout_prompts = 2;       // the last ones: never in training pairs
  int64_t modes = 4;                 // M per prompt
  int64_t latent_channels = 4;
  int64_t latent_size = 8;           // h = w
  int64_t embed_tokens = 4;          // S
  int64_t embed_dim = 32;            // X (the UNet's cross_attention_dim)
  double mode_scale = 1.0;           // per-element RMS of a mode's mean pattern
  double mode_weight_spread = 0.5;   // mixture weights ∝ exp(spread * z), z ~ N(0, 1)
  double noise_std = 0.3;            // sigma: samples = mode mean + sigma * N(0, I)
  double target_offset = 1.5;        // the oracle's target sits this many sigmas off the best mode
  // Preference pairs.
  int64_t train_pairs = 4096;
  int64_t heldout_pairs = 512;
  std::string pair_source = "base";  // "base" (exact samples) or "reference" (DDIM samples of the reference)
  double bt_temperature = 0.0;       // 0: winner by the oracle; > 0: Bradley-Terry draw
  uint64_t pair_seed = 0;
  int64_t pair_sample_steps = 20;    // DDIM steps when pair_source = "reference"
  // Reference pretraining.
  int64_t pretrain_steps = 1500;
  int64_t pretrain_batch = 32;
  double pretrain_lr = 5e-3;
  double pretrain_caption_dropout = 0.1;
  uint64_t pretrain_seed = 0;
  std::string unet_config;           // UNet config.json; "" = the built-in tiny fixture (unet_tiny.json)
  std::string cache_dir;             // "" = ${PREFDIFF_CACHE:-~/.cache/prefdiff}/toy-world

  // Parses a [data] section (the "id" key is accepted and must be "toy-world"). Unknown keys, wrong
  // types and out-of-range values are all reported at once, each with its key and a did-you-mean.
  static WorldConfig from_json(const nlohmann::json& section);
  nlohmann::json to_json() const;  // every key, resolved
  int64_t latent_numel() const { return latent_channels * latent_size * latent_size; }
};

// The keys of the [data] section, typed and ranged like every other recipe section.
const std::vector<ParamSpec>& world_schema();

// Counter-based generator: value i of stream (seed, stream) is a pure function of the three numbers
// (splitmix64 finalisers), so draws never depend on order, batching or thread count.
class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t stream);
  uint64_t bits(uint64_t index) const;
  double uniform(uint64_t index) const;  // [0, 1)
  double normal(uint64_t index) const;   // N(0, 1), Box-Muller over indices (2i, 2i+1)
  uint64_t key() const { return key_; }

 private:
  uint64_t key_;
};

// A stream id from a label and up to three integers ("mode", k, m).
uint64_t stream_id(const char* label, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0);

// One preference pair, winner first as the labels say.
struct Pair {
  uint64_t pair_id = 0;
  int64_t prompt = 0;
  std::vector<float> latent_w, latent_l;  // C*h*w each
  double reward_w = 0.0, reward_l = 0.0;  // oracle rewards
  int64_t mode_w = 0, mode_l = 0;         // mixture component each sample was drawn from (or nearest mode)
};

class World {
 public:
  explicit World(WorldConfig config);

  const WorldConfig& config() const { return config_; }
  int64_t prompt_count() const { return config_.prompts; }
  int64_t latent_numel() const { return numel_; }
  std::vector<int64_t> latent_shape() const;  // C, h, w
  bool is_heldout(int64_t prompt) const;
  std::vector<int64_t> train_prompts() const;
  std::vector<int64_t> heldout_prompts() const;

  // Text embedding [S, X] of a prompt, exactly representable in float16 (shards store f16).
  const std::vector<float>& prompt_embedding(int64_t prompt) const;
  // The unconditional embedding (classifier-free guidance, caption dropout): all zeros.
  const std::vector<float>& null_embedding() const { return null_embedding_; }
  std::string prompt_text(int64_t prompt) const;  // "toy-world prompt <k>"

  const std::vector<float>& mode_mean(int64_t prompt, int64_t mode) const;
  const std::vector<double>& mode_weights(int64_t prompt) const;  // sums to 1
  int64_t best_mode(int64_t prompt) const;                        // the mode the target sits next to
  const std::vector<float>& target(int64_t prompt) const;
  const std::vector<float>& preferred_direction() const { return direction_; }  // unit norm, shared by prompts

  // The oracle: r(k, x) = -mean((x - target_k)^2), in float64.
  double reward(int64_t prompt, const float* x) const;
  // Index of the mode mean closest to x (Euclidean), and that squared distance per element.
  int64_t nearest_mode(int64_t prompt, const float* x, double* mean_sq_distance = nullptr) const;

  // A base-distribution sample of prompt k: draw i of stream `stream`. Writes C*h*w floats and returns
  // the mixture component it came from.
  int64_t sample_base(int64_t prompt, uint64_t stream, uint64_t index, float* out) const;
  // Initial DDIM noise: standard normal C*h*w values, draw i of `stream`.
  void standard_normal(uint64_t stream, uint64_t index, float* out) const;

  // Labels a pair of samples of one prompt: the oracle's winner (bt_temperature 0) or a Bradley-Terry
  // draw P(a wins) = sigmoid((r_a - r_b) / temperature) keyed by the pair id. Returns true when a wins.
  bool a_wins(double reward_a, double reward_b, double temperature, uint64_t pair_id) const;

  // Training pairs drawn from the base distribution (train prompts only, round robin).
  std::vector<Pair> base_train_pairs() const;
  // The clean held-out pairs: base samples of every prompt, winner by the oracle (no temperature),
  // ids disjoint from the training pairs. Identical to the held-out shard's contents.
  std::vector<Pair> heldout_pairs() const;

  // The ids and the inputs of a pair set, exposed for pair sources that draw the samples themselves
  // (pair_source = "reference"): pair i's id and prompt.
  uint64_t pair_id(const char* split, int64_t index) const;
  int64_t train_pair_prompt(int64_t index) const;
  // Builds a pair from two samples of one prompt, labelling it with a_wins().
  Pair make_pair(uint64_t pair_id, int64_t prompt, const float* a, const float* b, int64_t mode_a, int64_t mode_b,
                 double temperature) const;

 private:
  WorldConfig config_;
  int64_t numel_;
  std::vector<std::vector<float>> embeddings_;
  std::vector<float> null_embedding_;
  std::vector<std::vector<std::vector<float>>> means_;  // [K][M][numel]
  std::vector<std::vector<double>> weights_;             // [K][M]
  std::vector<int64_t> best_;
  std::vector<std::vector<float>> targets_;
  std::vector<float> direction_;
};

}  // namespace prefdiff::toy

#endif  // PREFDIFF_TOY_WORLD_WORLD_HPP
