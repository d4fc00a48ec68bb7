#include "vae/vae_blocks.hpp"

#include <ATen/ATen.h>

namespace prefdiff::vae {

namespace {
constexpr double kEps = 1e-6;  // diffusers' Encoder/Decoder pass resnet_eps=1e-6 to every norm
}  // namespace

VaeResnetBlockImpl::VaeResnetBlockImpl(int64_t in, int64_t out, int64_t groups, const at::TensorOptions& opts) {
  norm1 = register_module("norm1", GroupNorm(groups, in, kEps, opts));
  conv1 = register_module("conv1", Conv2d(in, out, 3, 1, 1, opts));
  norm2 = register_module("norm2", GroupNorm(groups, out, kEps, opts));
  conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1, opts));
  if (in != out) conv_shortcut = register_module("conv_shortcut", Conv2d(in, out, 1, 1, 0, opts));
}

// In place when no graph records it: image encoding for data import runs without grad, and at 512x512 each
// saved pass over an activation is about 1% of the time. Callers pass tensors nothing else holds.
at::Tensor silu_fresh(at::Tensor t) { return t.requires_grad() ? at::silu(t) : at::silu_(t); }

at::Tensor VaeResnetBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = conv1->forward(silu_fresh(norm1->forward(x)));
  h = conv2->forward(silu_fresh(norm2->forward(h)));  // dropout 0 in every released VAE
  at::Tensor skip = conv_shortcut ? conv_shortcut->forward(x) : x;
  return h.requires_grad() ? skip + h : h.add_(skip);  // h is conv2's fresh output
}

VaeAttentionImpl::VaeAttentionImpl(int64_t channels, int64_t groups, const at::TensorOptions& opts) {
  group_norm = register_module("group_norm", GroupNorm(groups, channels, kEps, opts));
  to_q = register_module("to_q", Linear(channels, channels, true, opts));
  to_k = register_module("to_k", Linear(channels, channels, true, opts));
  to_v = register_module("to_v", Linear(channels, channels, true, opts));
  out_proj = Linear(channels, channels, true, opts);
  to_out = register_module("to_out", torch::nn::ModuleList(out_proj, Dropout(0.0)));
}

at::Tensor VaeAttentionImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  // [B,C,H,W] -> [B,HW,C]; GroupNorm on the 4-d input equals diffusers' norm of the [B,C,HW] view.
  at::Tensor t = group_norm->forward(x).view({b, c, h * w}).transpose(1, 2);
  auto heads = [&](const at::Tensor& y) { return y.unsqueeze(1); };  // one head of dim C
  at::Tensor o = at::scaled_dot_product_attention(heads(to_q->forward(t)), heads(to_k->forward(t)), heads(to_v->forward(t)));
  o = out_proj->forward(o.squeeze(1));
  at::Tensor out = o.transpose(1, 2).reshape({b, c, h, w});
  return out.requires_grad() ? out + x : out.add_(x);
}

VaeMidBlockImpl::VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention, const at::TensorOptions& opts) {
  attentions = register_module("attentions", torch::nn::ModuleList());
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int i = 0; i < 2; ++i) {
    resnets_.push_back(VaeResnetBlock(channels, channels, groups, opts));
    resnets->push_back(resnets_.back());
  }
  if (add_attention) {
    attention_ = VaeAttention(channels, groups, opts);
    attentions->push_back(attention_);
  }
}

at::Tensor VaeMidBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = resnets_[0]->forward(x);
  if (attention_) h = attention_->forward(h);
  return resnets_[1]->forward(h);
}

DownEncoderBlockImpl::DownEncoderBlockImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, bool downsample,
                                           const at::TensorOptions& opts) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    resnets_.push_back(VaeResnetBlock(i == 0 ? in : out, out, groups, opts));
    resnets->push_back(resnets_.back());
  }
  if (downsample) {
    downsample_ = unet2d::Downsample2D(out, /*padding=*/0, opts);
    downsamplers = register_module("downsamplers", torch::nn::ModuleList(downsample_));
  }
}

at::Tensor DownEncoderBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (auto& r : resnets_) h = r->forward(h);
  return downsample_ ? downsample_->forward(h) : h;
}

UpDecoderBlockImpl::UpDecoderBlockImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, bool upsample,
                                       const at::TensorOptions& opts) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    resnets_.push_back(VaeResnetBlock(i == 0 ? in : out, out, groups, opts));
    resnets->push_back(resnets_.back());
  }
  if (upsample) {
    upsample_ = unet2d::Upsample2D(out, opts);
    upsamplers = register_module("upsamplers", torch::nn::ModuleList(upsample_));
  }
}

at::Tensor UpDecoderBlockImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (auto& r : resnets_) h = r->forward(h);
  return upsample_ ? upsample_->forward(h) : h;
}

}  // namespace prefdiff::vae
