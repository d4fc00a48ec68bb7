#pragma once
// Sampling loops with classifier-free guidance, as diffusers' SD/SDXL pipelines run them.

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>

#include "prefdiff/diffusion/ddim.hpp"
#include "prefdiff/diffusion/euler.hpp"

namespace prefdiff::diffusion {

// The denoiser: prediction for model input x at timestep t (0-d). With guidance (scale > 1) x is the
// doubled batch [x; x] and the callee must pair it with [unconditional; conditional] text embeddings,
// like diffusers' pipelines (negative prompt first).
using Denoiser = std::function<at::Tensor(const at::Tensor& model_input, const at::Tensor& timestep)>;

// uncond + scale * (cond - uncond) for a prediction of the doubled batch [uncond; cond].
at::Tensor classifier_free_guidance(const at::Tensor& doubled_prediction, double scale);

struct SamplerOptions {
  int64_t steps = 50;
  double guidance_scale = 7.5;  // <= 1 disables guidance (no doubled batch)
  double eta = 0.0;             // DDIM only
  std::optional<at::Generator> generator;  // DDIM eta > 0 noise
};

// Runs the full loop from pure noise `initial_noise` (unit variance) and returns the final latents.
at::Tensor sample_ddim(DdimScheduler& scheduler, const at::Tensor& initial_noise, const Denoiser& denoiser,
                       const SamplerOptions& options);
at::Tensor sample_euler(EulerScheduler& scheduler, const at::Tensor& initial_noise, const Denoiser& denoiser,
                        const SamplerOptions& options);

}  // namespace prefdiff::diffusion
