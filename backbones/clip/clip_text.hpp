#pragma once
// transformers CLIPTextModel (SD1.5's text_encoder) and CLIPTextModelWithProjection (SDXL's text_encoder_2),
// keyed by the released checkpoint names ("text_model.embeddings.token_embedding.weight", ...,
// "text_projection.weight"). Input: token ids [B,S] (S <= max_position_embeddings) and optionally an
// attention mask [B,S] (1 = token, 0 = padding); attention is causal.

#include <vector>

#include "clip/clip_encoder.hpp"

namespace prefdiff::clip {

struct TextEncoderOutput {
  at::Tensor last_hidden_state;            // [B,S,H], after final_layer_norm
  at::Tensor pooler_output;                // [B,H], last_hidden_state at the EOS position
  at::Tensor pooled_index;                 // [B] int64, that position (see ClipTextConfig::eos_token_id)
  at::Tensor text_embeds;                  // [B,P] = text_projection(pooler_output) (WithProjection only)
  std::vector<at::Tensor> hidden_states;   // if asked: embeddings, then each layer's output (no final LN);
                                           // L+1 entries, hidden_states[L-1] (i.e. [-2]) is SDXL's
};

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  ClipTextEmbeddingsImpl(const ClipTextConfig& config, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& input_ids);  // token + position embedding
  Embedding token_embedding{nullptr}, position_embedding{nullptr};
};
TORCH_MODULE(ClipTextEmbeddings);

// transformers' CLIPTextTransformer (named "text_model" in checkpoints).
class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  ClipTextTransformerImpl(ClipTextConfig config, const at::TensorOptions& opts);
  TextEncoderOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
                            bool output_hidden_states = false);
  const ClipTextConfig& config() const { return config_; }

  ClipTextEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  LayerNorm final_layer_norm{nullptr};

 private:
  ClipTextConfig config_;
};
TORCH_MODULE(ClipTextTransformer);

// CLIPTextModel (with_projection = false) or CLIPTextModelWithProjection (adds text_projection, no bias).
class ClipTextModelImpl : public torch::nn::Module {
 public:
  ClipTextModelImpl(ClipTextConfig config, bool with_projection, const at::TensorOptions& opts);
  TextEncoderOutput forward(const at::Tensor& input_ids, const at::Tensor& attention_mask = {},
                            bool output_hidden_states = false);

  bool has_projection() const { return static_cast<bool>(text_projection); }
  const ClipTextConfig& config() const { return text_model->config(); }
  c10::ScalarType dtype() const { return text_model->final_layer_norm->weight.scalar_type(); }
  c10::Device device() const { return text_model->final_layer_norm->weight.device(); }

  ClipTextTransformer text_model{nullptr};
  Linear text_projection{nullptr};
};
TORCH_MODULE(ClipTextModel);

}  // namespace prefdiff::clip
