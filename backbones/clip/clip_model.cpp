#include "clip/clip_model.hpp"

#include <ATen/ATen.h>

namespace prefdiff::clip {

// The same op sequence as transformers' _get_vector_norm (sum of squares, then ^0.5).
at::Tensor l2_normalize(const at::Tensor& x) { return x / x.pow(2).sum(-1, /*keepdim=*/true).pow(0.5); }

ClipModelImpl::ClipModelImpl(ClipConfig config, const at::TensorOptions& opts) : config_(std::move(config)) {
  text_model = register_module("text_model", ClipTextTransformer(config_.text, opts));
  vision_model = register_module("vision_model", ClipVisionTransformer(config_.vision, opts));
  visual_projection = register_module("visual_projection",
                                      Linear(config_.vision.hidden_size, config_.projection_dim, false, opts));
  text_projection = register_module("text_projection", Linear(config_.text.hidden_size, config_.projection_dim, false, opts));
  logit_scale = register_parameter("logit_scale", at::full({}, config_.logit_scale_init_value, opts));
}

at::Tensor ClipModelImpl::image_features(const at::Tensor& pixel_values) {
  return visual_projection->forward(vision_model->forward(pixel_values).pooler_output);
}

at::Tensor ClipModelImpl::text_features(const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  return text_projection->forward(text_model->forward(input_ids, attention_mask).pooler_output);
}

ClipOutput ClipModelImpl::forward(const at::Tensor& input_ids, const at::Tensor& pixel_values,
                                  const at::Tensor& attention_mask) {
  ClipOutput out;
  out.vision = vision_model->forward(pixel_values);
  out.text = text_model->forward(input_ids, attention_mask);
  out.image_embeds = l2_normalize(visual_projection->forward(out.vision.pooler_output));
  out.text_embeds = l2_normalize(text_projection->forward(out.text.pooler_output));
  // transformers: logits_per_text = text @ image^T * scale; logits_per_image is its transpose.
  out.logits_per_text = at::matmul(out.text_embeds, out.image_embeds.t()) * logit_scale.exp();
  out.logits_per_image = out.logits_per_text.t();
  return out;
}

at::Tensor ClipModelImpl::paired_scores(const at::Tensor& image_features, const at::Tensor& text_features) const {
  if (image_features.sizes() != text_features.sizes() || image_features.dim() != 2)
    throw std::invalid_argument("clip: paired_scores needs image and text features of the same shape [N,P]");
  return logit_scale.exp() * (l2_normalize(image_features) * l2_normalize(text_features)).sum(-1);
}

}  // namespace prefdiff::clip
