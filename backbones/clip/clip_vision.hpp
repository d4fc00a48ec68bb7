#pragma once
// transformers CLIPVisionModel / CLIPVisionModelWithProjection (ViT), keyed by the released names
// ("vision_model.embeddings.class_embedding", "vision_model.pre_layrnorm.weight" (sic), ...,
// "visual_projection.weight"). Input: preprocessed pixel values [B,C,S,S], S = image_size.

#include <vector>

#include "clip/clip_encoder.hpp"

namespace prefdiff::clip {

struct VisionEncoderOutput {
  at::Tensor last_hidden_state;           // [B,1+N,H] after the encoder (no post_layernorm), class token first
  at::Tensor pooler_output;               // [B,H] = post_layernorm(last_hidden_state[:,0])
  at::Tensor image_embeds;                // [B,P] = visual_projection(pooler_output) (WithProjection only)
  std::vector<at::Tensor> hidden_states;  // if asked: encoder input (after pre_layrnorm), then each layer's output
};

class ClipVisionEmbeddingsImpl : public torch::nn::Module {
 public:
  ClipVisionEmbeddingsImpl(const ClipVisionConfig& config, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& pixel_values);  // [B,1+N,H]: class token, patches; + positions

  at::Tensor class_embedding;              // [H]
  std::shared_ptr<torch::nn::Module> patch_embedding;  // holds "weight" [H,C,P,P] (Conv2d without bias)
  at::Tensor patch_weight;
  Embedding position_embedding{nullptr};   // [1+N,H]

 private:
  int64_t patch_size_;
};
TORCH_MODULE(ClipVisionEmbeddings);

// transformers' CLIPVisionTransformer (named "vision_model" in checkpoints).
class ClipVisionTransformerImpl : public torch::nn::Module {
 public:
  ClipVisionTransformerImpl(ClipVisionConfig config, const at::TensorOptions& opts);
  VisionEncoderOutput forward(const at::Tensor& pixel_values, bool output_hidden_states = false);
  const ClipVisionConfig& config() const { return config_; }

  ClipVisionEmbeddings embeddings{nullptr};
  LayerNorm pre_layrnorm{nullptr}, post_layernorm{nullptr};
  ClipEncoder encoder{nullptr};

 private:
  ClipVisionConfig config_;
};
TORCH_MODULE(ClipVisionTransformer);

// CLIPVisionModel (with_projection = false) or CLIPVisionModelWithProjection (adds visual_projection).
class ClipVisionModelImpl : public torch::nn::Module {
 public:
  ClipVisionModelImpl(ClipVisionConfig config, bool with_projection, const at::TensorOptions& opts);
  VisionEncoderOutput forward(const at::Tensor& pixel_values, bool output_hidden_states = false);

  bool has_projection() const { return static_cast<bool>(visual_projection); }
  const ClipVisionConfig& config() const { return vision_model->config(); }

  ClipVisionTransformer vision_model{nullptr};
  Linear visual_projection{nullptr};
};
TORCH_MODULE(ClipVisionModel);

}  // namespace prefdiff::clip
