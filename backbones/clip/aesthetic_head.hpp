#pragma once
// The LAION aesthetic predictor head (christophschuhmann/improved-aesthetic-predictor,
// sac+logos+ava1-l14-linearMSE.pth): an MLP without activations on the L2-normalised CLIP ViT-L/14 image
// embedding. Keys as in the released state dict: layers.0 Linear(D,1024), layers.1 Dropout(0.2),
// layers.2 Linear(1024,128), layers.3 Dropout(0.2), layers.4 Linear(128,64), layers.5 Dropout(0.1),
// layers.6 Linear(64,16), layers.7 Linear(16,1). The .pth is converted once to safetensors with
// tools/convert_aesthetic_head.py.

#include <torch/nn/modules/container/modulelist.h>

#include <filesystem>

#include "clip/clip_loading.hpp"
#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::clip {

class AestheticHeadImpl : public torch::nn::Module {
 public:
  AestheticHeadImpl(int64_t input_size, const at::TensorOptions& opts);
  // image_embeds [B,D] (CLIP image features, unnormalised) -> scores [B]. Normalises as the reference does:
  // x / ||x||_2, a zero row left as is.
  at::Tensor forward(const at::Tensor& image_embeds);
  int64_t input_size() const { return input_size_; }

  torch::nn::ModuleList layers{nullptr};

 private:
  int64_t input_size_;
  std::vector<unet2d::Linear> linears_;
  std::vector<unet2d::Dropout> dropouts_;
};
TORCH_MODULE(AestheticHead);

// From a safetensors file holding layers.{0,2,4,6,7}.{weight,bias}; D is read from layers.0.weight. Eval mode.
AestheticHead load_aesthetic_head(const std::filesystem::path& file, const ClipLoadOptions& options = {});

}  // namespace prefdiff::clip
