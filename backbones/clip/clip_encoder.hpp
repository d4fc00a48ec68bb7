#pragma once
// The transformer both CLIP towers share, keyed by transformers' names: CLIPAttention (q/k/v/out_proj),
// CLIPMLP (fc1, fc2), CLIPEncoderLayer (pre-LayerNorm residual blocks) and CLIPEncoder (layers.N).
// Leaf layers (Linear, LayerNorm) come from the unet2d backbone.

#include <torch/nn/modules/container/modulelist.h>

#include <vector>

#include "clip/clip_config.hpp"
#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::clip {

using unet2d::LayerNorm;
using unet2d::Linear;

// nn.Embedding's parameter ("weight" [num, dim]) and lookup.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num, int64_t dim, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& ids) const;
  at::Tensor weight;
};
TORCH_MODULE(Embedding);

// Self-attention mask for one forward: causal (text) and/or a key padding mask.
struct AttentionMask {
  bool causal = false;
  at::Tensor allowed;  // bool [B,1,S,S], true = may attend; undefined = only `causal` applies
};

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t hidden, int64_t heads, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const AttentionMask& mask);

  Linear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(int64_t hidden, int64_t intermediate, Activation act, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  Linear fc1{nullptr}, fc2{nullptr};

 private:
  Activation act_;
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  ClipEncoderLayerImpl(const ClipTowerConfig& config, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const AttentionMask& mask);

  ClipAttention self_attn{nullptr};
  LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipEncoderImpl : public torch::nn::Module {
 public:
  ClipEncoderImpl(const ClipTowerConfig& config, const at::TensorOptions& opts);
  // `hidden_states` (optional) receives the input and every layer's output: num_hidden_layers + 1 entries.
  at::Tensor forward(const at::Tensor& x, const AttentionMask& mask, std::vector<at::Tensor>* hidden_states = nullptr);

  torch::nn::ModuleList layers{nullptr};

 private:
  std::vector<ClipEncoderLayer> layers_;
};
TORCH_MODULE(ClipEncoder);

}  // namespace prefdiff::clip
