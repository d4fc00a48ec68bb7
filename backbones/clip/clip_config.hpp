#pragma once
// CLIP configurations, torch-free: transformers' CLIPTextConfig / CLIPVisionConfig / CLIPConfig read from a
// config.json, and OpenCLIP model configs (open_clip_config.json) converted to the same structs. The sizes
// that fix the weights' shapes are required; the rest take transformers 5 defaults; unknown keys are ignored.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "model_folder/config_reader.hpp"

namespace prefdiff::clip {

using ConfigError = model_folder::ConfigError;

enum class Activation { kQuickGelu, kGelu };  // "quick_gelu" (x*sigmoid(1.702x), OpenAI CLIP) / "gelu" (erf)

// Settings both towers share.
struct ClipTowerConfig {
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  Activation hidden_act = Activation::kQuickGelu;
  double layer_norm_eps = 1e-5;
  int64_t projection_dim = 512;  // width of text_projection / visual_projection (standalone models)
};

struct ClipTextConfig : ClipTowerConfig {
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  // EOS pooling. transformers: eos_token_id 2 (every released SD1.5/SDXL/OpenAI config) selects the legacy
  // rule, the position of the largest id (argmax(input_ids), as OpenCLIP's "argmax" pooling); any other
  // value the first position where input_ids == eos_token_id (0 when a row has none).
  int64_t eos_token_id = 49407;
  bool pool_at_argmax = false;

  static ClipTextConfig read(model_folder::ConfigReader& r);
  static ClipTextConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
};

struct ClipVisionConfig : ClipTowerConfig {
  int64_t num_channels = 3;
  int64_t image_size = 0;
  int64_t patch_size = 0;
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }

  static ClipVisionConfig read(model_folder::ConfigReader& r);
  static ClipVisionConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
};

// transformers CLIPConfig (CLIPModel): both towers, projected to projection_dim, and logit_scale.
struct ClipConfig {
  ClipTextConfig text;
  ClipVisionConfig vision;
  int64_t projection_dim = 512;
  double logit_scale_init_value = 2.6592;

  // Reads text_config / vision_config; the legacy text_config_dict / vision_config_dict (older CLIPModel
  // configs such as openai/clip-vit-large-patch14) override the keys they set, as transformers does.
  static ClipConfig from_json(const nlohmann::json& j, const std::string& origin = "config.json");
  // An OpenCLIP model config: open_clip_config.json ({"model_cfg": {...}}) or a bare model config
  // (open_clip/model_configs/ViT-H-14.json). ViT towers only; text pooling "argmax".
  static ClipConfig from_openclip_json(const nlohmann::json& j, const std::string& origin = "open_clip_config.json");
  bool openclip_custom_text = false;  // OpenCLIP CustomTextCLIP: text tower keys under "text."
};

}  // namespace prefdiff::clip
