#pragma once
// diffusers AutoencoderKL configuration from vae/config.json, torch-free. The keys that fix the weights' shapes
// are required (diffusers' save_config always writes them); the others take diffusers' defaults (e.g.
// scaling_factor 0.18215, which SD1.5's original config relies on); unknown keys are ignored.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model_folder/config_reader.hpp"

namespace prefdiff::vae {

using ConfigError = model_folder::ConfigError;

struct AutoencoderKlConfig {
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  std::vector<int64_t> block_out_channels;  // one per down (and up) block
  int64_t layers_per_block = 1;             // resnets per encoder block (decoder: +1)
  int64_t latent_channels = 4;
  int64_t norm_num_groups = 32;
  bool mid_block_add_attention = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  // Latent normalisation: scaled = (z - shift_factor) * scaling_factor, or with per-channel statistics
  // scaled = (z - latents_mean) * scaling_factor / latents_std (the two forms are exclusive).
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;
  std::optional<std::vector<double>> latents_mean, latents_std;
  // Run in float32 even when float16/bfloat16 is requested (the SDXL VAE overflows in half precision).
  bool force_upcast = true;

  size_t num_blocks() const { return block_out_channels.size(); }
  // Spatial factor between images and latents: 2^(blocks-1) (8 for SD).
  int64_t downscale_factor() const { return int64_t(1) << (num_blocks() - 1); }

  // `origin` names the file in errors (ConfigError lists every bad key).
  static AutoencoderKlConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
};

}  // namespace prefdiff::vae
