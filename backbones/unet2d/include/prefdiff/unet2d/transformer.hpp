#pragma once
// diffusers Attention (AttnProcessor2_0), GEGLU FeedForward, BasicTransformerBlock and the continuous-input
// Transformer2DModel, with diffusers' module names (attn1.to_out.0, ff.net.0.proj, ...).

#include <torch/nn/modules/container/modulelist.h>

#include <functional>
#include <string>

#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::unet2d {

class AttentionImpl : public torch::nn::Module {
 public:
  // context_dim == query_dim for self-attention.
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim, const at::TensorOptions& opts);
  // `context` undefined: self-attention.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context = {});

  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out_proj{nullptr};
  torch::nn::ModuleList to_out{nullptr};  // [Linear, Dropout]

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(Attention);

class GegluImpl : public torch::nn::Module {
 public:
  GegluImpl(int64_t dim_in, int64_t dim_out, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);
  Linear proj{nullptr};
};
TORCH_MODULE(Geglu);

class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::ModuleList net{nullptr};  // [GEGLU, Dropout, Linear]

 private:
  Geglu geglu_{nullptr};
  Linear out_{nullptr};
};
TORCH_MODULE(FeedForward);

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim, int64_t context_dim,
                            const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context);

  LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

class Transformer2DModelImpl : public torch::nn::Module {
 public:
  Transformer2DModelImpl(int64_t heads, int64_t channels, int64_t layers, int64_t context_dim, int64_t groups,
                         bool linear_projection, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context);
  // The same, checkpointing the parts for which `checkpointed` says so: "proj_in" (the GroupNorm and the input
  // projection) and "transformer_blocks.<i>".
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context,
                     const std::function<bool(const std::string&)>& checkpointed);

  GroupNorm norm{nullptr};
  torch::nn::Module* proj_in = nullptr;  // Conv2d (1x1) or Linear, by use_linear_projection
  torch::nn::Module* proj_out = nullptr;
  torch::nn::ModuleList transformer_blocks{nullptr};

 private:
  at::Tensor project_in(const at::Tensor& x);  // norm, proj_in, to tokens [B, H*W, inner]
  bool linear_;
  int64_t inner_;
  Conv2d conv_in_{nullptr}, conv_out_{nullptr};
  Linear lin_in_{nullptr}, lin_out_{nullptr};
  std::vector<BasicTransformerBlock> blocks_;
};
TORCH_MODULE(Transformer2DModel);

}  // namespace prefdiff::unet2d
