#pragma once
// Leaf modules with diffusers' parameter names (weight/bias). Our own instead of torch::nn's so that
// parameters can be created on any device, the meta device included (full-size models are counted
// without allocating), and default initialisation can be skipped when weights are loaded anyway.

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "prefdiff/unet2d/lora.hpp"

namespace prefdiff::unet2d {

// PyTorch's default init (kaiming_uniform(a=sqrt(5)) => U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight
// and bias); no-op on the meta device.
void init_default(at::Tensor& weight, at::Tensor& bias, int64_t fan_in);

class Conv2dImpl : public torch::nn::Module {
 public:
  Conv2dImpl(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }
  at::Tensor weight, bias;
  LoraAdapter lora{nullptr};  // set by set_adapter() (lora.hpp); its output is added to the layer's

 private:
  int64_t stride_, padding_;
};
TORCH_MODULE(Conv2d);

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in, int64_t out, bool with_bias, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;  // bias undefined when !with_bias
  LoraAdapter lora{nullptr};  // set by set_adapter() (lora.hpp); its output is added to the layer's
};
TORCH_MODULE(Linear);

class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t groups, int64_t channels, double eps, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;

 private:
  int64_t groups_;
  double eps_;
};
TORCH_MODULE(GroupNorm);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t channels, double eps, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;

 private:
  double eps_;
};
TORCH_MODULE(LayerNorm);

// Parameterless placeholder that keeps diffusers' indices ("to_out.1", "ff.net.1") in ModuleLists.
class DropoutImpl : public torch::nn::Module {
 public:
  explicit DropoutImpl(double p) : p_(p) {}
  at::Tensor forward(const at::Tensor& x);

 private:
  double p_;
};
TORCH_MODULE(Dropout);

// Downsample2D: 3x3 conv with stride 2 (diffusers pads right/bottom by one when padding == 0).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(int64_t channels, int64_t padding, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x) const;
  Conv2d conv{nullptr};

 private:
  int64_t padding_;
};
TORCH_MODULE(Downsample2D);

// Upsample2D: nearest x2 (or to `size` when the skip connection's size is odd), then a 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  Upsample2DImpl(int64_t channels, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const std::vector<int64_t>& size = {}) const;
  Conv2d conv{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace prefdiff::unet2d
