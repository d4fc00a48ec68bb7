#include "clip/clip_encoder.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace prefdiff::clip {

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({num, dim}, opts));
  if (!weight.device().is_meta()) {
    at::NoGradGuard no_grad;
    weight.normal_(0.0, 0.02);
  }
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) const { return at::embedding(weight, ids); }

ClipAttentionImpl::ClipAttentionImpl(int64_t hidden, int64_t heads, const at::TensorOptions& opts)
    : heads_(heads), head_dim_(hidden / heads) {
  // transformers' registration order (k, v, q, out), so named_parameters() lists tensors in its order.
  k_proj = register_module("k_proj", Linear(hidden, hidden, true, opts));
  v_proj = register_module("v_proj", Linear(hidden, hidden, true, opts));
  q_proj = register_module("q_proj", Linear(hidden, hidden, true, opts));
  out_proj = register_module("out_proj", Linear(hidden, hidden, true, opts));
}

at::Tensor ClipAttentionImpl::forward(const at::Tensor& x, const AttentionMask& mask) {
  const int64_t b = x.size(0), s = x.size(1);
  auto split = [&](const at::Tensor& t) { return t.view({b, s, heads_, head_dim_}).transpose(1, 2); };
  at::Tensor q = split(q_proj->forward(x)), k = split(k_proj->forward(x)), v = split(v_proj->forward(x));
  // As transformers' sdpa path: is_causal without a mask, else the combined boolean mask; scale 1/sqrt(d).
  const bool is_causal = mask.causal && !mask.allowed.defined() && s > 1;
  std::optional<at::Tensor> allowed;  // an undefined tensor inside the optional would count as a mask
  if (mask.allowed.defined()) allowed = mask.allowed;
  at::Tensor o = at::scaled_dot_product_attention(q, k, v, allowed, 0.0, is_causal,
                                                  1.0 / std::sqrt(static_cast<double>(head_dim_)));
  return out_proj->forward(o.transpose(1, 2).reshape({b, s, heads_ * head_dim_}));
}

ClipMlpImpl::ClipMlpImpl(int64_t hidden, int64_t intermediate, Activation act, const at::TensorOptions& opts) : act_(act) {
  fc1 = register_module("fc1", Linear(hidden, intermediate, true, opts));
  fc2 = register_module("fc2", Linear(intermediate, hidden, true, opts));
}

at::Tensor ClipMlpImpl::forward(const at::Tensor& x) {
  at::Tensor h = fc1->forward(x);
  h = act_ == Activation::kGelu ? at::gelu(h) : h * at::sigmoid(1.702 * h);
  return fc2->forward(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const ClipTowerConfig& c, const at::TensorOptions& opts) {
  self_attn = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads, opts));
  layer_norm1 = register_module("layer_norm1", LayerNorm(c.hidden_size, c.layer_norm_eps, opts));
  mlp = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size, c.hidden_act, opts));
  layer_norm2 = register_module("layer_norm2", LayerNorm(c.hidden_size, c.layer_norm_eps, opts));
}

at::Tensor ClipEncoderLayerImpl::forward(const at::Tensor& x, const AttentionMask& mask) {
  at::Tensor h = x + self_attn->forward(layer_norm1->forward(x), mask);
  return h + mlp->forward(layer_norm2->forward(h));
}

ClipEncoderImpl::ClipEncoderImpl(const ClipTowerConfig& c, const at::TensorOptions& opts) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers_.push_back(ClipEncoderLayer(c, opts));
    layers->push_back(layers_.back());
  }
}

at::Tensor ClipEncoderImpl::forward(const at::Tensor& x, const AttentionMask& mask, std::vector<at::Tensor>* hidden_states) {
  at::Tensor h = x;
  if (hidden_states) hidden_states->assign(1, h);
  for (auto& layer : layers_) {
    h = layer->forward(h, mask);
    if (hidden_states) hidden_states->push_back(h);
  }
  return h;
}

}  // namespace prefdiff::clip
