#pragma once
// Euler sampler (diffusers EulerDiscreteScheduler with SDXL's config: linear interpolation, no Karras
// sigmas, final sigma 0, s_churn 0).

#include <ATen/core/Tensor.h>

#include "prefdiff/diffusion/ddim.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"

namespace prefdiff::diffusion {

class EulerScheduler {
 public:
  explicit EulerScheduler(const ScheduleConfig& config);

  void set_timesteps(int64_t steps);
  const at::Tensor& timesteps() const { return timesteps_; }  // float32, descending
  const at::Tensor& sigmas() const { return sigmas_; }        // float32 [steps + 1], last 0
  // sqrt(sigma_max^2 + 1) for leading spacing (sigma_max for trailing): scale of the initial noise.
  at::Tensor init_noise_sigma() const;

  // Model input at step `index`: x / sqrt(sigma^2 + 1).
  at::Tensor scale_model_input(const at::Tensor& sample, int64_t index) const;
  // Step from sigmas[index] to sigmas[index + 1].
  StepOutput step(const at::Tensor& model_output, int64_t index, const at::Tensor& sample) const;

 private:
  NoiseSchedule schedule_;
  at::Tensor timesteps_, sigmas_;
};

}  // namespace prefdiff::diffusion
