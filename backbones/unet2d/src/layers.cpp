#include "prefdiff/unet2d/layers.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace prefdiff::unet2d {

void init_default(at::Tensor& weight, at::Tensor& bias, int64_t fan_in) {
  if (weight.device().is_meta()) return;
  at::NoGradGuard no_grad;
  double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  weight.uniform_(-bound, bound);
  if (bias.defined()) bias.uniform_(-bound, bound);
}

Conv2dImpl::Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                       const at::TensorOptions& opts)
    : stride_(stride), padding_(padding) {
  weight = register_parameter("weight", at::empty({out, in, kernel, kernel}, opts));
  bias = register_parameter("bias", at::empty({out}, opts));
  init_default(weight, bias, in * kernel * kernel);
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) const {
  at::Tensor y = at::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
  return lora && lora->active() ? y + lora->delta(x) : y;
}

LinearImpl::LinearImpl(int64_t in, int64_t out, bool with_bias, const at::TensorOptions& opts) {
  weight = register_parameter("weight", at::empty({out, in}, opts));
  if (with_bias) bias = register_parameter("bias", at::empty({out}, opts));
  init_default(weight, bias, in);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) const {
  at::Tensor y = at::linear(x, weight, bias);
  return lora && lora->active() ? y + lora->delta(x) : y;
}

GroupNormImpl::GroupNormImpl(int64_t groups, int64_t channels, double eps, const at::TensorOptions& opts)
    : groups_(groups), eps_(eps) {
  weight = register_parameter("weight", at::empty({channels}, opts));
  bias = register_parameter("bias", at::empty({channels}, opts));
  if (!weight.device().is_meta()) {
    at::NoGradGuard no_grad;
    weight.fill_(1);
    bias.zero_();
  }
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) const { return at::group_norm(x, groups_, weight, bias, eps_); }

LayerNormImpl::LayerNormImpl(int64_t channels, double eps, const at::TensorOptions& opts) : eps_(eps) {
  weight = register_parameter("weight", at::empty({channels}, opts));
  bias = register_parameter("bias", at::empty({channels}, opts));
  if (!weight.device().is_meta()) {
    at::NoGradGuard no_grad;
    weight.fill_(1);
    bias.zero_();
  }
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps_);
}

at::Tensor DropoutImpl::forward(const at::Tensor& x) {
  return (p_ > 0 && is_training()) ? at::dropout(x, p_, true) : x;
}

Downsample2DImpl::Downsample2DImpl(int64_t channels, int64_t padding, const at::TensorOptions& opts)
    : padding_(padding) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 2, padding, opts));
}

at::Tensor Downsample2DImpl::forward(const at::Tensor& x) const {
  if (padding_ == 0) return conv->forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
  return conv->forward(x);
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, const at::TensorOptions& opts) {
  conv = register_module("conv", Conv2d(channels, channels, 3, 1, 1, opts));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x, const std::vector<int64_t>& size) const {
  at::Tensor up = size.empty() ? at::upsample_nearest2d(x, {2 * x.size(2), 2 * x.size(3)})
                               : at::upsample_nearest2d(x, size);
  return conv->forward(up);
}

}  // namespace prefdiff::unet2d
