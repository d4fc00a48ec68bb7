#pragma once
// diffusers ResnetBlock2D (time_embedding_norm "default", skip_time_act false).

#include "prefdiff/unet2d/layers.hpp"

namespace prefdiff::unet2d {

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb, int64_t groups, double eps, double dropout,
                    double output_scale_factor, const at::TensorOptions& opts);
  // `act_emb` is silu(emb): the same for every resnet, so the UNet computes it once.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& act_emb);

  GroupNorm norm1{nullptr}, norm2{nullptr};
  Conv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  Linear time_emb_proj{nullptr};
  Dropout dropout{nullptr};

 private:
  double output_scale_factor_;
};
TORCH_MODULE(ResnetBlock2D);

}  // namespace prefdiff::unet2d
