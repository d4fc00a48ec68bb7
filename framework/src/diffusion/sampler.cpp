#include "prefdiff/diffusion/sampler.hpp"

#include <ATen/ATen.h>

namespace prefdiff::diffusion {

at::Tensor classifier_free_guidance(const at::Tensor& doubled_prediction, double scale) {
  if (doubled_prediction.size(0) % 2 != 0)
    throw ScheduleError("classifier-free guidance needs the doubled batch [uncond; cond], got an odd batch");
  auto parts = doubled_prediction.chunk(2, 0);
  return parts[0] + scale * (parts[1] - parts[0]);
}

namespace {

at::Tensor predict(const Denoiser& denoiser, const at::Tensor& x, const at::Tensor& t, double scale) {
  if (scale <= 1.0) return denoiser(x, t);
  return classifier_free_guidance(denoiser(at::cat({x, x}, 0), t), scale);
}

}  // namespace

at::Tensor sample_ddim(DdimScheduler& scheduler, const at::Tensor& initial_noise, const Denoiser& denoiser,
                       const SamplerOptions& options) {
  scheduler.set_timesteps(options.steps);
  at::Tensor x = initial_noise;  // DDIM's init_noise_sigma is 1
  const at::Tensor& ts = scheduler.timesteps();
  for (int64_t i = 0; i < ts.size(0); ++i) {
    int64_t t = ts[i].item<int64_t>();
    at::Tensor pred = predict(denoiser, x, ts[i].to(x.device()), options.guidance_scale);
    x = scheduler.step(pred, t, x, options.eta, options.generator).prev_sample;
  }
  return x;
}

at::Tensor sample_euler(EulerScheduler& scheduler, const at::Tensor& initial_noise, const Denoiser& denoiser,
                        const SamplerOptions& options) {
  scheduler.set_timesteps(options.steps);
  at::Tensor x = initial_noise * scheduler.init_noise_sigma().to(initial_noise.device());
  const at::Tensor& ts = scheduler.timesteps();
  for (int64_t i = 0; i < ts.size(0); ++i) {
    at::Tensor xin = scheduler.scale_model_input(x, i);
    at::Tensor pred = predict(denoiser, xin, ts[i].to(x.device()), options.guidance_scale);
    x = scheduler.step(pred, i, x).prev_sample;
  }
  return x;
}

}  // namespace prefdiff::diffusion
