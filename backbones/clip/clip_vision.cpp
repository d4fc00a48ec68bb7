#include "clip/clip_vision.hpp"

#include <ATen/ATen.h>

#include <sstream>

namespace prefdiff::clip {

ClipVisionEmbeddingsImpl::ClipVisionEmbeddingsImpl(const ClipVisionConfig& c, const at::TensorOptions& opts)
    : patch_size_(c.patch_size) {
  class_embedding = register_parameter("class_embedding", at::empty({c.hidden_size}, opts));
  patch_embedding = register_module("patch_embedding", std::make_shared<torch::nn::Module>());
  patch_weight = patch_embedding->register_parameter(
      "weight", at::empty({c.hidden_size, c.num_channels, c.patch_size, c.patch_size}, opts));
  position_embedding = register_module("position_embedding", Embedding(c.num_patches() + 1, c.hidden_size, opts));
  if (!opts.device().is_meta()) {
    at::NoGradGuard no_grad;
    class_embedding.normal_(0.0, 0.02);
    patch_weight.normal_(0.0, 0.02);
  }
}

at::Tensor ClipVisionEmbeddingsImpl::forward(const at::Tensor& pixel_values) {
  const int64_t b = pixel_values.size(0);
  at::Tensor patches = at::conv2d(pixel_values.to(patch_weight.device(), patch_weight.scalar_type()), patch_weight, {},
                                  {patch_size_, patch_size_});
  patches = patches.flatten(2).transpose(1, 2);  // [B,N,H]
  at::Tensor cls = class_embedding.expand({b, 1, -1});
  return at::cat({cls, patches}, 1) + position_embedding->weight.unsqueeze(0);
}

ClipVisionTransformerImpl::ClipVisionTransformerImpl(ClipVisionConfig config, const at::TensorOptions& opts)
    : config_(std::move(config)) {
  embeddings = register_module("embeddings", ClipVisionEmbeddings(config_, opts));
  pre_layrnorm = register_module("pre_layrnorm", LayerNorm(config_.hidden_size, config_.layer_norm_eps, opts));
  encoder = register_module("encoder", ClipEncoder(config_, opts));
  post_layernorm = register_module("post_layernorm", LayerNorm(config_.hidden_size, config_.layer_norm_eps, opts));
}

VisionEncoderOutput ClipVisionTransformerImpl::forward(const at::Tensor& pixel_values, bool output_hidden_states) {
  const auto& c = config_;
  if (!pixel_values.defined() || pixel_values.dim() != 4 || pixel_values.size(1) != c.num_channels ||
      pixel_values.size(2) != c.image_size || pixel_values.size(3) != c.image_size) {
    std::ostringstream got;
    if (pixel_values.defined()) got << pixel_values.sizes(); else got << "undefined";
    throw std::invalid_argument("clip vision: pixel_values must be [B," + std::to_string(c.num_channels) + "," +
                                std::to_string(c.image_size) + "," + std::to_string(c.image_size) + "], got " + got.str() +
                                ". HINT: resize and center-crop to image_size as the CLIP image processor does.");
  }
  VisionEncoderOutput out;
  at::Tensor h = pre_layrnorm->forward(embeddings->forward(pixel_values));
  out.last_hidden_state = encoder->forward(h, AttentionMask{}, output_hidden_states ? &out.hidden_states : nullptr);
  out.pooler_output = post_layernorm->forward(out.last_hidden_state.select(1, 0));
  return out;
}

ClipVisionModelImpl::ClipVisionModelImpl(ClipVisionConfig config, bool with_projection, const at::TensorOptions& opts) {
  const int64_t hidden = config.hidden_size, proj = config.projection_dim;
  vision_model = register_module("vision_model", ClipVisionTransformer(std::move(config), opts));
  if (with_projection) visual_projection = register_module("visual_projection", Linear(hidden, proj, false, opts));
}

VisionEncoderOutput ClipVisionModelImpl::forward(const at::Tensor& pixel_values, bool output_hidden_states) {
  VisionEncoderOutput out = vision_model->forward(pixel_values, output_hidden_states);
  if (visual_projection) out.image_embeds = visual_projection->forward(out.pooler_output);
  return out;
}

}  // namespace prefdiff::clip
