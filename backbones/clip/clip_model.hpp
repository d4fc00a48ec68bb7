#pragma once
// transformers CLIPModel: both towers, their projections and logit_scale, keyed by the released names
// (text_model.*, vision_model.*, text_projection.weight, visual_projection.weight, logit_scale). What the
// CLIP scorers (PickScore, HPSv2) compute: logit_scale.exp() * cos(image features, text features).

#include "clip/clip_text.hpp"
#include "clip/clip_vision.hpp"

namespace prefdiff::clip {

struct ClipOutput {
  at::Tensor image_embeds;      // [I,P] projected image features / their L2 norm
  at::Tensor text_embeds;       // [T,P] projected text features / their L2 norm
  at::Tensor logits_per_image;  // [I,T] = logit_scale.exp() * image_embeds @ text_embeds^T
  at::Tensor logits_per_text;   // [T,I], its transpose
  VisionEncoderOutput vision;   // the vision tower's own outputs (unprojected)
  TextEncoderOutput text;       // the text tower's own outputs (unprojected)
};

class ClipModelImpl : public torch::nn::Module {
 public:
  ClipModelImpl(ClipConfig config, const at::TensorOptions& opts);

  // Projected, unnormalised features (transformers' get_image_features / get_text_features).
  at::Tensor image_features(const at::Tensor& pixel_values);
  at::Tensor text_features(const at::Tensor& input_ids, const at::Tensor& attention_mask = {});
  ClipOutput forward(const at::Tensor& input_ids, const at::Tensor& pixel_values, const at::Tensor& attention_mask = {});
  // Per-pair scores logit_scale.exp() * cos(image_features[i], text_features[i]) -> [N] (PickScore, HPSv2).
  at::Tensor paired_scores(const at::Tensor& image_features, const at::Tensor& text_features) const;

  const ClipConfig& config() const { return config_; }
  c10::ScalarType dtype() const { return logit_scale.scalar_type(); }
  c10::Device device() const { return logit_scale.device(); }

  ClipTextTransformer text_model{nullptr};
  ClipVisionTransformer vision_model{nullptr};
  Linear visual_projection{nullptr}, text_projection{nullptr};
  at::Tensor logit_scale;  // 0-d

 private:
  ClipConfig config_;
};
TORCH_MODULE(ClipModel);

// x / ||x||_2 along the last dimension (transformers' CLIPModel normalisation).
at::Tensor l2_normalize(const at::Tensor& x);

}  // namespace prefdiff::clip
