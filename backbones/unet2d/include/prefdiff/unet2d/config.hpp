#pragma once
// UNet2DConditionModel configuration from a diffusers config.json (spec: backbones.md section 6).
// Torch-free. Every key of the spec's table is used, ignored or refused as listed there; keys outside it
// are refused with a did-you-mean, all problems reported at once.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace prefdiff::unet2d {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class BlockKind { kCrossAttnDown, kDown, kCrossAttnUp, kUp };

struct Unet2dConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  double freq_shift = 0;
  std::vector<BlockKind> down_blocks;  // per block, in order
  std::vector<BlockKind> up_blocks;
  bool has_mid_block = true;
  std::vector<int64_t> block_out_channels;
  std::vector<int64_t> layers_per_block;              // per down block
  int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  double dropout = 0.0;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  std::vector<int64_t> cross_attention_dim;           // per down block
  std::vector<int64_t> transformer_layers_per_block;  // per down block
  std::vector<int64_t> num_heads;                     // per down block (attention_head_dim's real meaning)
  bool use_linear_projection = false;
  bool text_time = false;                             // addition_embed_type == "text_time" (SDXL)
  int64_t addition_time_embed_dim = 0;
  int64_t projection_class_embeddings_input_dim = 0;
  int64_t time_embedding_dim = 0;                     // resolved: 4 * block_out_channels[0] unless overridden
  int64_t conv_in_kernel = 3;
  int64_t conv_out_kernel = 3;

  size_t num_blocks() const { return block_out_channels.size(); }
  // Width of the pooled text embedding that text_time expects (projection dim minus 6 time ids).
  int64_t text_embeds_dim() const { return projection_class_embeddings_input_dim - 6 * addition_time_embed_dim; }

  // The number of weights the model has, from the config alone (exact for every valid config; a double so
  // that no config can overflow it). from_json refuses configs beyond 2e10 before anything is allocated.
  double parameter_count() const;

  // `origin` names the file in error messages. Every value is range-checked (e.g. channels, layers,
  // kernels, norm_eps > 0) and the model's size bounded; every problem is reported at once.
  static Unet2dConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
  // The full config diffusers' save_config writes: every key, defaults resolved, unknown keys dropped.
  static nlohmann::json to_diffusers_json(const nlohmann::json& source);
};

}  // namespace prefdiff::unet2d
