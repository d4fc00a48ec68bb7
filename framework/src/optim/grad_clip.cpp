#include "prefdiff/optim/grad_clip.hpp"

#include <ATen/ATen.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

namespace prefdiff::optim {

GradNormResult clip_grad_norm(const std::vector<at::Tensor>& parameters, double max_norm) {
  if (!(max_norm >= 0)) throw std::invalid_argument("clip_grad_norm: train.grad_clip must be >= 0 (0 disables clipping)");
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : parameters)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  GradNormResult result;
  if (grads.empty()) return result;

  // As torch.nn.utils.clip_grad_norm_: the 2-norm of the per-tensor 2-norms, on the first gradient's device.
  // Gradients of one device and dtype (the usual case) take the multi-tensor kernels, as PyTorch's foreach
  // path: on CUDA a handful of launches instead of two per tensor; on the CPU the same per-tensor arithmetic.
  const at::Device device = grads.front().device();
  const bool uniform = std::all_of(grads.begin(), grads.end(), [&](const at::Tensor& g) {
    return g.device() == device && g.scalar_type() == grads.front().scalar_type();
  });
  std::vector<at::Tensor> norms;
  if (uniform) {
    norms = at::_foreach_norm(grads, 2);
  } else {
    norms.reserve(grads.size());
    for (const auto& g : grads) norms.push_back(at::linalg_vector_norm(g, 2).to(device, at::kFloat));
  }
  const at::Tensor total = at::linalg_vector_norm(at::stack(norms).to(at::kFloat), 2);
  result.total_norm = total.item<double>();  // one device sync per optimizer step; the trainer logs it anyway
  result.finite = std::isfinite(result.total_norm);
  if (!result.finite || max_norm == 0.0) return result;

  // The coefficient as the device computes it (float32), known on the host without a second sync.
  const float host_coef = std::min(1.0f, static_cast<float>(max_norm) / (static_cast<float>(result.total_norm) + 1e-6f));
  result.coefficient = host_coef;
  if (result.coefficient < 1.0) {
    const at::Tensor coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    if (uniform)
      at::_foreach_mul_(grads, coef);  // as PyTorch: the float32 coefficient, whatever the gradient dtype
    else
      for (auto& g : grads) g.mul_(coef.to(g.device()));
    result.clipped = true;
  }
  return result;
}

GradNormResult clip_grad_norm(const std::vector<std::pair<std::string, at::Tensor>>& named_parameters,
                              double max_norm) {
  std::vector<at::Tensor> params;
  params.reserve(named_parameters.size());
  for (const auto& np : named_parameters) params.push_back(np.second);
  return clip_grad_norm(params, max_norm);
}

}  // namespace prefdiff::optim
