#pragma once
// The UNet's down, mid and up blocks: CrossAttnDownBlock2D / DownBlock2D, UNetMidBlock2DCrossAttn,
// CrossAttnUpBlock2D / UpBlock2D (one class per direction; `cross` selects the attention variant).

#include <torch/nn/modules/container/modulelist.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "prefdiff/unet2d/resnet.hpp"
#include "prefdiff/unet2d/transformer.hpp"

namespace prefdiff::unet2d {

// What every block needs during one UNet forward.
struct BlockContext {
  at::Tensor act_emb;  // silu(time embedding)
  at::Tensor context;  // encoder_hidden_states
  // Which checkpointing units (module paths: "down_blocks.0.resnets.1", "mid_block.attentions.0.proj_in",
  // "up_blocks.1.attentions.2.transformer_blocks.0"; see activation_memory.hpp) recompute in backward. Unset:
  // none. Set by the UNet only for a training forward.
  std::function<bool(const std::string&)> checkpoint;
  bool checkpointed(const std::string& unit) const { return checkpoint && checkpoint(unit); }
  std::map<std::string, at::Tensor>* taps = nullptr;  // optional: intermediate outputs keyed by module name
  void tap(const std::string& name, const at::Tensor& t) const {
    if (taps) (*taps)[name] = t;
  }
};

struct BlockSpec {
  bool cross = false;
  int64_t in = 0, out = 0, prev_out = 0;  // prev_out: up blocks only
  int64_t layers = 1;                     // resnets (up blocks: layers + 1)
  int64_t temb = 0, groups = 32;
  double eps = 1e-5, dropout = 0.0;
  int64_t heads = 8, transformer_layers = 1, context_dim = 768;
  bool linear_projection = false;
  bool resample = false;  // has a downsampler / upsampler
  int64_t downsample_padding = 1;
};

// A resnet or transformer called `name` (module path), checkpointed where bc says so.
at::Tensor run_resnet(ResnetBlock2D& r, const at::Tensor& x, const BlockContext& bc, const std::string& name);
at::Tensor run_transformer(Transformer2DModel& t, const at::Tensor& x, const BlockContext& bc, const std::string& name);

class DownBlockImpl : public torch::nn::Module {
 public:
  DownBlockImpl(const BlockSpec& spec, const at::TensorOptions& opts);
  // Appends its skip tensors to `skips`.
  at::Tensor forward(const at::Tensor& x, const BlockContext& bc, std::vector<at::Tensor>& skips,
                     const std::string& name);
  torch::nn::ModuleList attentions{nullptr}, resnets{nullptr}, downsamplers{nullptr};

 private:
  std::vector<ResnetBlock2D> res_;
  std::vector<Transformer2DModel> attn_;
  Downsample2D down_{nullptr};
};
TORCH_MODULE(DownBlock);

class MidBlockImpl : public torch::nn::Module {
 public:
  MidBlockImpl(const BlockSpec& spec, double output_scale_factor, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x, const BlockContext& bc);
  torch::nn::ModuleList attentions{nullptr}, resnets{nullptr};

 private:
  ResnetBlock2D res0_{nullptr}, res1_{nullptr};
  Transformer2DModel attn_{nullptr};
};
TORCH_MODULE(MidBlock);

class UpBlockImpl : public torch::nn::Module {
 public:
  UpBlockImpl(const BlockSpec& spec, const at::TensorOptions& opts);
  // Pops one skip per resnet from the back of `skips`; `upsample_size` empty => x2.
  at::Tensor forward(const at::Tensor& x, const BlockContext& bc, std::vector<at::Tensor>& skips,
                     const std::vector<int64_t>& upsample_size, const std::string& name);
  int64_t num_resnets() const { return static_cast<int64_t>(res_.size()); }
  torch::nn::ModuleList attentions{nullptr}, resnets{nullptr}, upsamplers{nullptr};

 private:
  std::vector<ResnetBlock2D> res_;
  std::vector<Transformer2DModel> attn_;
  Upsample2D up_{nullptr};
};
TORCH_MODULE(UpBlock);

}  // namespace prefdiff::unet2d
