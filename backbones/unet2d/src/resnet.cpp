#include "prefdiff/unet2d/resnet.hpp"

#include <ATen/ATen.h>

namespace prefdiff::unet2d {

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in, int64_t out, int64_t temb, int64_t groups, double eps,
                                     double dropout_p, double output_scale_factor, const at::TensorOptions& opts)
    : output_scale_factor_(output_scale_factor) {
  // Registration order follows diffusers' __init__ so named_parameters() lists tensors in its order.
  norm1 = register_module("norm1", GroupNorm(groups, in, eps, opts));
  conv1 = register_module("conv1", Conv2d(in, out, 3, 1, 1, opts));
  time_emb_proj = register_module("time_emb_proj", Linear(temb, out, true, opts));
  norm2 = register_module("norm2", GroupNorm(groups, out, eps, opts));
  dropout = register_module("dropout", Dropout(dropout_p));
  conv2 = register_module("conv2", Conv2d(out, out, 3, 1, 1, opts));
  if (in != out) conv_shortcut = register_module("conv_shortcut", Conv2d(in, out, 1, 1, 0, opts));
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x, const at::Tensor& act_emb) {
  at::Tensor h = conv1->forward(at::silu(norm1->forward(x)));
  at::Tensor t = time_emb_proj->forward(act_emb);
  h = h + t.unsqueeze(-1).unsqueeze(-1);
  h = conv2->forward(dropout->forward(at::silu(norm2->forward(h))));
  at::Tensor skip = conv_shortcut ? conv_shortcut->forward(x) : x;
  at::Tensor out = skip + h;
  return output_scale_factor_ == 1.0 ? out : out / output_scale_factor_;
}

}  // namespace prefdiff::unet2d
