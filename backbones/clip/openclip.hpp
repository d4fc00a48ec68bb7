#pragma once
// OpenCLIP checkpoints in the same ClipModel: HPSv2 is OpenCLIP ViT-H-14 with OpenCLIP's own tensor names
// (visual.conv1.weight, visual.transformer.resblocks.N.attn.in_proj_weight (q,k,v fused), visual.proj,
// token_embedding.weight, positional_embedding, ln_final, text_projection, logit_scale, ...). The map below
// names, for each ClipModel tensor, the OpenCLIP tensor it comes from (rows of in_proj_*, transposed
// projections), so loading stays strict: missing, unexpected and mis-shaped tensors are all reported.

#include <filesystem>

#include "clip/clip_loading.hpp"
#include "model_folder/mapped_load.hpp"

namespace prefdiff::clip {

// ClipModel tensor name -> OpenCLIP tensor (CustomTextCLIP models keep the text tower under "text.").
// OpenCLIP's non-persistent "attn_mask" buffer is skipped when an old checkpoint carries it.
model_folder::KeyMap openclip_key_map(const ClipConfig& config);

// A folder as OpenCLIP publishes models on the Hugging Face hub: open_clip_config.json and
// open_clip_model[.variant].safetensors (tools/convert_openclip_checkpoint.py writes one from a .pt file).
ClipModel load_openclip_model(const std::filesystem::path& folder, const ClipLoadOptions& options = {});
// The same from an explicit model config (open_clip_config.json or open_clip's model_configs/<name>.json)
// and one safetensors file.
ClipModel load_openclip_model(const std::filesystem::path& config_json, const std::filesystem::path& weights,
                              const ClipLoadOptions& options = {});

}  // namespace prefdiff::clip
