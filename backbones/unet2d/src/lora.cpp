#include "prefdiff/unet2d/lora.hpp"

#include <ATen/ATen.h>
#include <fnmatch.h>

#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::unet2d {

LoraAdapterImpl::LoraAdapterImpl(const at::Tensor& down_weight, const at::Tensor& up_weight, double alpha, double dropout,
                                 std::shared_ptr<const LoraControl> control, int64_t stride, int64_t padding)
    : alpha_(alpha), dropout_(dropout), control_(std::move(control)), stride_(stride), padding_(padding) {
  down = register_module("down", LoraWeight(down_weight));
  up = register_module("up", LoraWeight(up_weight));
}

at::Tensor LoraAdapterImpl::delta(const at::Tensor& x) const {
  // As peft: the input in the adapter's dtype (fp32 adapters on bf16 base weights), dropout on the input,
  // the scale applied to up's output, the sum back in the layer's dtype.
  const double scale = control_->multiplier * alpha_ / static_cast<double>(rank());
  at::Tensor h = x.to(down->weight.scalar_type());
  if (dropout_ > 0 && is_training()) h = at::dropout(h, dropout_, true);
  at::Tensor out = down->weight.dim() == 4
                       ? at::conv2d(at::conv2d(h, down->weight, {}, {stride_, stride_}, {padding_, padding_}), up->weight)
                       : at::linear(at::linear(h, down->weight), up->weight);
  return (out * scale).to(x.scalar_type());
}

std::vector<AdaptableLayer> adaptable_layers(const torch::nn::Module& root) {
  std::vector<AdaptableLayer> out;
  for (const auto& item : root.named_modules("", false)) {
    torch::nn::Module* m = item.value().get();
    if (auto* linear = dynamic_cast<LinearImpl*>(m))
      out.push_back({item.key(), m, false, linear->weight.size(1), linear->weight.size(0), 1});
    else if (auto* conv = dynamic_cast<Conv2dImpl*>(m))
      out.push_back({item.key(), m, true, conv->weight.size(1), conv->weight.size(0), conv->weight.size(2)});
  }
  return out;
}

bool lora_target_matches(const std::string& module, const std::string& pattern) {
  if (pattern.find_first_of("*?[") != std::string::npos) return ::fnmatch(pattern.c_str(), module.c_str(), 0) == 0;
  if (module == pattern) return true;
  return module.size() > pattern.size() && module.compare(module.size() - pattern.size(), pattern.size(), pattern) == 0 &&
         module[module.size() - pattern.size() - 1] == '.';
}

void set_adapter(const AdaptableLayer& layer, LoraAdapter adapter) {
  LoraAdapter* slot = layer.conv ? &static_cast<Conv2dImpl*>(layer.layer)->lora : &static_cast<LinearImpl*>(layer.layer)->lora;
  const bool registered = layer.layer->named_children().contains("lora");
  if (adapter) {
    if (registered)
      layer.layer->replace_module("lora", adapter);
    else
      layer.layer->register_module("lora", adapter);
  } else if (registered) {
    layer.layer->unregister_module("lora");
  }
  *slot = adapter;
}

LoraAdapter adapter_of(const AdaptableLayer& layer) {
  return layer.conv ? static_cast<Conv2dImpl*>(layer.layer)->lora : static_cast<LinearImpl*>(layer.layer)->lora;
}

}  // namespace prefdiff::unet2d
