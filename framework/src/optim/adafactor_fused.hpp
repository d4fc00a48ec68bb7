// Fused CUDA Adafactor (internal to prefdiff_optim). The update is adafactor.cpp's, step for step; the kernels
// (adafactor_fused.cu) update every parameter of a group of one shape in a few launches, read each parameter once
// and write it once, read its gradient three times (row/column sums, the update's RMS, the update), and allocate
// no parameter-sized temporaries. Launch plan and byte counts: docs/performance.md ("Fused Adafactor").
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "adafactor_kernels.hpp"

namespace prefdiff::optim::detail {

// Parameters of one shape and step: float32, contiguous, on one CUDA device, as their gradients and state.
struct FusedAdafactorGroup {
  std::vector<at::Tensor> params, grads;
  std::vector<at::Tensor> rows, cols;  // factored (ndim >= 2)
  std::vector<at::Tensor> fulls;       // ndim < 2
  double beta2t = 0;
};

struct FusedAdafactorScalars {
  double eps1 = 1e-30, lr = 0, weight_decay = 0, clip_threshold = 1;
};

// True in builds with the CUDA kernels (PREFDIFF_WITH_CUDA_KERNELS: a CUDA LibTorch and nvcc): the kernels exist. Whether a device is present is the caller's
// concern (parameters on CUDA).
bool fused_adafactor_available();
// Whether this parameter and its gradient can take the fused path (float32, contiguous, CUDA, same device).
bool fused_adafactor_eligible(const at::Tensor& param, const at::Tensor& grad);
// One step of every group, on the current CUDA stream (one host-to-device copy of the pointer table).
void fused_adafactor_step(const std::vector<FusedAdafactorGroup>& groups, const FusedAdafactorScalars& scalars);

}  // namespace prefdiff::optim::detail
