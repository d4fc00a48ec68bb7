#pragma once
// The building blocks of diffusers' AutoencoderKL, keyed by diffusers' module names: ResnetBlock2D without
// a time embedding, the mid-block self-attention (group norm, one head, residual), UNetMidBlock2D,
// DownEncoderBlock2D and UpDecoderBlock2D. Leaf layers come from the unet2d backbone.

#include <torch/nn/modules/container/modulelist.h>

#include <map>
#include <string>

#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::vae {

using unet2d::Conv2d;
using unet2d::Dropout;
using unet2d::GroupNorm;
using unet2d::Linear;

// Intermediate outputs of one encode/decode, keyed like diffusers' modules ("encoder.down_blocks.0").
using Taps = std::map<std::string, at::Tensor>;

// silu of a freshly computed tensor, in place when it takes no part in autograd (no-grad inference).
at::Tensor silu_fresh(at::Tensor t);

class VaeResnetBlockImpl : public torch::nn::Module {
 public:
  VaeResnetBlockImpl(int64_t in, int64_t out, int64_t groups, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};  // conv_shortcut only when in != out
};
TORCH_MODULE(VaeResnetBlock);

// diffusers Attention as UNetMidBlock2D builds it for the VAE: heads = 1 (head dim = channels), biases,
// group norm on the input, residual connection, over the H*W positions.
class VaeAttentionImpl : public torch::nn::Module {
 public:
  VaeAttentionImpl(int64_t channels, int64_t groups, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out_proj{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, Dropout] as diffusers names them
};
TORCH_MODULE(VaeAttention);

class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(int64_t channels, int64_t groups, bool add_attention, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets{nullptr}, attentions{nullptr};

 private:
  std::vector<VaeResnetBlock> resnets_;
  VaeAttention attention_{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// DownEncoderBlock2D: `layers` resnets, then (except in the last block) a stride-2 conv with diffusers'
// asymmetric (0,1,0,1) padding.
class DownEncoderBlockImpl : public torch::nn::Module {
 public:
  DownEncoderBlockImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, bool downsample,
                       const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets{nullptr}, downsamplers{nullptr};

 private:
  std::vector<VaeResnetBlock> resnets_;
  unet2d::Downsample2D downsample_{nullptr};
};
TORCH_MODULE(DownEncoderBlock);

// UpDecoderBlock2D: `layers` resnets, then (except in the last block) nearest x2 and a 3x3 conv.
class UpDecoderBlockImpl : public torch::nn::Module {
 public:
  UpDecoderBlockImpl(int64_t in, int64_t out, int64_t layers, int64_t groups, bool upsample,
                     const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets{nullptr}, upsamplers{nullptr};

 private:
  std::vector<VaeResnetBlock> resnets_;
  unet2d::Upsample2D upsample_{nullptr};
};
TORCH_MODULE(UpDecoderBlock);

}  // namespace prefdiff::vae
