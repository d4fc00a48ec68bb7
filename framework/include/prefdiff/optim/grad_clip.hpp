#pragma once
// Global gradient-norm clipping, numerically as torch.nn.utils.clip_grad_norm_ (norm type 2): per-tensor
// norms in the gradient's dtype, their norm, coefficient max_norm / (norm + 1e-6) clamped to 1.
// (The official Diffusion-DPO script calls it only with AdamW: `if not args.use_adafactor`; with Adafactor
// the update clipping inside the optimizer is the only clipping.)

#include <ATen/core/Tensor.h>

#include <utility>
#include <string>
#include <vector>

namespace prefdiff::optim {

struct GradNormResult {
  double total_norm = 0.0;  // before clipping; NaN or Inf when some gradient is not finite
  bool finite = true;       // false: nothing was scaled, the caller applies its nan_policy
  bool clipped = false;     // gradients were scaled by `coefficient`
  double coefficient = 1.0;
};

// Parameters whose grad is undefined are ignored. max_norm == 0 only measures the norm. A non-finite norm
// is reported and never applied (torch would scale every gradient by NaN).
GradNormResult clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm);
GradNormResult clip_grad_norm(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters,
                              double max_norm);

}  // namespace prefdiff::optim
