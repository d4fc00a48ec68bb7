#pragma once
// LoRA adapters on the UNet's Linear and Conv2d layers, as peft's LoraLayer computes them:
//   y = base(x) + multiplier * (alpha / rank) * up(down(dropout(x)))
// An adapter is registered as its layer's submodule "lora", so its parameters are named
// "<module>.lora.down.weight" / "<module>.lora.up.weight": diffusers' LoRA file keys without "unet.".
// Every adapter of a model shares one LoraControl: switched off, the model is exactly its base (the DPO
// reference), without a second copy in memory.

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace prefdiff::unet2d {

struct LoraControl {
  bool enabled = true;
  double multiplier = 1.0;  // diffusers' cross_attention_kwargs={"scale": ...}
};

// One tensor under the name "weight" (diffusers' lora.down.weight / lora.up.weight).
class LoraWeightImpl : public torch::nn::Module {
 public:
  explicit LoraWeightImpl(const at::Tensor& value) { weight = register_parameter("weight", value); }
  at::Tensor weight;
};
TORCH_MODULE(LoraWeight);

class LoraAdapterImpl : public torch::nn::Module {
 public:
  // Linear: down [r, in], up [out, r]. Conv2d: down [r, in, k, k] (the layer's stride and padding), up [out, r, 1, 1].
  LoraAdapterImpl(const at::Tensor& down, const at::Tensor& up, double alpha, double dropout,
                  std::shared_ptr<const LoraControl> control, int64_t stride = 1, int64_t padding = 0);

  bool active() const { return control_->enabled && control_->multiplier != 0.0; }
  // multiplier * alpha/rank * up(down(dropout(x))), in x's dtype.
  at::Tensor delta(const at::Tensor& x) const;
  int64_t rank() const { return down->weight.size(0); }
  double alpha() const { return alpha_; }

  LoraWeight down{nullptr}, up{nullptr};

 private:
  double alpha_, dropout_;
  std::shared_ptr<const LoraControl> control_;
  int64_t stride_, padding_;
};
TORCH_MODULE(LoraAdapter);

// A layer an adapter can wrap: its diffusers module name and the layer.
struct AdaptableLayer {
  std::string name;
  torch::nn::Module* layer = nullptr;
  bool conv = false;
  int64_t in = 0, out = 0, kernel = 1;
};
// Every Linear and Conv2d of `root`, in named_modules() order.
std::vector<AdaptableLayer> adaptable_layers(const torch::nn::Module& root);

// peft's rule for a list of target_modules: the module's name equals the pattern or ends with "." + pattern;
// a pattern with * ? or [ is a glob over the whole name instead (fnmatch).
bool lora_target_matches(const std::string& module, const std::string& pattern);

// Installs (replacing any) or removes the adapter of one Linear/Conv2d layer.
void set_adapter(const AdaptableLayer& layer, LoraAdapter adapter);
LoraAdapter adapter_of(const AdaptableLayer& layer);

}  // namespace prefdiff::unet2d
