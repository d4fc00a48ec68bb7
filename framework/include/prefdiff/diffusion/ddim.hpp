#pragma once
// DDIM sampler step (diffusers DDIMScheduler: clip_sample and thresholding off, as in SD's config).

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <optional>

#include "prefdiff/diffusion/noise_schedule.hpp"

namespace prefdiff::diffusion {

struct StepOutput {
  at::Tensor prev_sample;
  at::Tensor pred_original_sample;
};

class DdimScheduler {
 public:
  explicit DdimScheduler(const ScheduleConfig& config);

  void set_timesteps(int64_t steps);
  const at::Tensor& timesteps() const { return timesteps_; }  // int64, descending
  // alphas_cumprod[0] for SD (set_alpha_to_one false), else 1.
  const at::Tensor& final_alpha_cumprod() const { return final_alpha_cumprod_; }
  const NoiseSchedule& schedule() const { return schedule_; }

  // One step from `timestep` to the previous one. eta > 0 adds sigma_t noise drawn from `generator`.
  StepOutput step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample, double eta = 0.0,
                  std::optional<at::Generator> generator = std::nullopt) const;

 private:
  NoiseSchedule schedule_;
  at::Tensor final_alpha_cumprod_;
  at::Tensor timesteps_;
  int64_t steps_ = 0;
};

}  // namespace prefdiff::diffusion
