#include "prefdiff/diffusion/euler.hpp"

#include <ATen/ATen.h>

namespace prefdiff::diffusion {

EulerScheduler::EulerScheduler(const ScheduleConfig& config) : schedule_(config) {}

void EulerScheduler::set_timesteps(int64_t steps) {
  at::Tensor t = inference_timesteps(schedule_.config(), steps);
  const at::Tensor& ac = schedule_.alphas_cumprod();
  // Integer timesteps: np.interp hits the table entries exactly.
  at::Tensor all = at::sqrt((1 - ac) / ac);
  sigmas_ = at::cat({all.index_select(0, t), at::zeros({1}, at::kFloat)});
  timesteps_ = t.to(at::kFloat);
}

at::Tensor EulerScheduler::init_noise_sigma() const {
  if (!sigmas_.defined()) throw ScheduleError("EulerScheduler: call set_timesteps first");
  at::Tensor m = sigmas_.max();
  if (schedule_.config().timestep_spacing == "trailing") return m;
  return at::sqrt(m * m + 1);
}

at::Tensor EulerScheduler::scale_model_input(const at::Tensor& sample, int64_t index) const {
  at::Tensor s = sigmas_[index];
  return sample / at::sqrt(s * s + 1).to(sample.device());
}

StepOutput EulerScheduler::step(const at::Tensor& model_output, int64_t index, const at::Tensor& sample) const {
  if (!sigmas_.defined()) throw ScheduleError("EulerScheduler::step called before set_timesteps");
  if (index < 0 || index + 1 >= sigmas_.size(0)) throw ScheduleError("Euler step index out of range");
  auto dev = sample.device();
  at::Tensor x = sample.to(at::kFloat);
  at::Tensor sigma = sigmas_[index].to(dev);  // s_churn = 0: sigma_hat = sigma
  at::Tensor x0;
  if (schedule_.config().prediction_type == PredictionType::kEpsilon)
    x0 = x - sigma * model_output;
  else
    x0 = model_output * (-sigma / at::sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1);
  at::Tensor derivative = (x - x0) / sigma;
  at::Tensor dt = sigmas_[index + 1].to(dev) - sigma;
  at::Tensor prev = (x + derivative * dt).to(model_output.scalar_type());
  return {prev, x0};
}

}  // namespace prefdiff::diffusion
