// Follows diffusers' DDIMScheduler.step operation by operation on 0-d float32 tensors, so results agree
// to float32 rounding.
#include "prefdiff/diffusion/ddim.hpp"

#include <ATen/ATen.h>

namespace prefdiff::diffusion {

DdimScheduler::DdimScheduler(const ScheduleConfig& config) : schedule_(config) {
  final_alpha_cumprod_ = config.set_alpha_to_one ? at::scalar_tensor(1.0, at::kFloat) : schedule_.alphas_cumprod()[0].clone();
}

void DdimScheduler::set_timesteps(int64_t steps) {
  timesteps_ = inference_timesteps(schedule_.config(), steps);
  steps_ = steps;
}

StepOutput DdimScheduler::step(const at::Tensor& model_output, int64_t timestep, const at::Tensor& sample, double eta,
                               std::optional<at::Generator> generator) const {
  if (steps_ == 0) throw ScheduleError("DdimScheduler::step called before set_timesteps");
  const auto& cfg = schedule_.config();
  if (timestep < 0 || timestep >= cfg.num_train_timesteps)
    throw ScheduleError("DDIM timestep " + std::to_string(timestep) + " outside [0, " + std::to_string(cfg.num_train_timesteps) + ")");
  int64_t prev_t = timestep - cfg.num_train_timesteps / steps_;
  const at::Tensor& ac = schedule_.alphas_cumprod();
  at::Tensor alpha_t = ac[timestep];
  at::Tensor alpha_prev = prev_t >= 0 ? ac[prev_t] : final_alpha_cumprod_;
  at::Tensor beta_t = 1 - alpha_t;
  auto dev = sample.device();
  at::Tensor sa = at::sqrt(alpha_t).to(dev), sb = at::sqrt(beta_t).to(dev);

  at::Tensor x0, eps;
  if (cfg.prediction_type == PredictionType::kEpsilon) {
    x0 = (sample - sb * model_output) / sa;
    eps = model_output;
  } else {
    x0 = sa * sample - sb * model_output;
    eps = sa * model_output + sb * sample;
  }
  at::Tensor beta_prev = 1 - alpha_prev;
  at::Tensor variance = (beta_prev / beta_t) * (1 - alpha_t / alpha_prev);
  at::Tensor std_dev = eta * at::sqrt(variance);
  at::Tensor direction = at::sqrt(1 - alpha_prev - std_dev * std_dev).to(dev) * eps;
  at::Tensor prev = at::sqrt(alpha_prev).to(dev) * x0 + direction;
  if (eta > 0) {
    at::Tensor noise = at::randn(sample.sizes(), generator, sample.options());
    prev = prev + std_dev.to(dev) * noise;
  }
  return {prev, x0};
}

}  // namespace prefdiff::diffusion
