#pragma once
// CLIP models from transformers folders: config.json + model[.variant].safetensors (or shards listed in
// model.safetensors.index[.variant].json). Key names as released ("text_model.", "vision_model." prefixes);
// transformers 5's unprefixed CLIPTextModel / CLIPVisionModel files load too, and the old persistent
// "*.embeddings.position_ids" buffers are skipped. Errors name the file and every bad tensor or key.

#include <filesystem>
#include <optional>
#include <string>

#include "clip/clip_model.hpp"

namespace prefdiff::clip {

struct ClipLoadOptions {
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::ScalarType::Float;  // parameters (float32, bfloat16, float16 or float64)
  std::string variant;                             // "fp16" -> model.fp16.safetensors
};

// A pipeline root (its `subfolder`, e.g. "text_encoder" or "text_encoder_2") or the encoder folder itself.
// with_projection: CLIPTextModelWithProjection or CLIPTextModel; unset = from the config's "architectures",
// else whether the weights have text_projection.weight. Eval mode.
ClipTextModel load_clip_text_model(const std::filesystem::path& folder, const ClipLoadOptions& options = {},
                                   const std::string& subfolder = "text_encoder",
                                   std::optional<bool> with_projection = std::nullopt);
// CLIPVisionModel(WithProjection), decided the same way ("visual_projection.weight").
ClipVisionModel load_clip_vision_model(const std::filesystem::path& folder, const ClipLoadOptions& options = {},
                                       std::optional<bool> with_projection = std::nullopt);
// CLIPModel (PickScore and other transformers CLIP checkpoints).
ClipModel load_clip_model(const std::filesystem::path& folder, const ClipLoadOptions& options = {});

}  // namespace prefdiff::clip
