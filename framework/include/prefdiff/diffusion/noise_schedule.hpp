#pragma once
// DDPM noise schedule and training targets (spec: backbones.md section 4), numerically as diffusers'
// DDPMScheduler: the schedule is built in float32 (or float64 on request) with the same op sequence.

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace prefdiff::diffusion {

class ScheduleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class PredictionType { kEpsilon, kVPrediction };

// The keys of diffusers' scheduler_config.json that define the training schedule. Keys that only other
// scheduler classes use are ignored (diffusers' from_config does the same); values that would change the
// math in a way not implemented here (trained_betas, rescale_betas_zero_snr, thresholding, ...) are refused.
struct ScheduleConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";  // or "linear"
  PredictionType prediction_type = PredictionType::kEpsilon;
  int64_t steps_offset = 0;                      // inference only
  std::string timestep_spacing = "leading";      // inference only: "leading" or "trailing"
  bool set_alpha_to_one = true;                  // DDIM only (SD configs: false)

  static ScheduleConfig from_json(const nlohmann::json& j, const std::string& origin = "scheduler_config.json");
};

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const ScheduleConfig& config = {}, c10::ScalarType dtype = c10::ScalarType::Float);

  const ScheduleConfig& config() const { return config_; }
  const at::Tensor& betas() const { return betas_; }                    // [T], CPU
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }  // [T], CPU

  // sqrt(a_t) x0 + sqrt(1-a_t) eps, t per sample (int64 [B]), broadcast over the other dims.
  at::Tensor add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // v = sqrt(a_t) eps - sqrt(1-a_t) x0 (diffusers get_velocity).
  at::Tensor velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // The regression target of the configured prediction type (eps or v).
  at::Tensor target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const;
  // a_t / (1 - a_t) per timestep, float32 like training_utils.compute_snr.
  at::Tensor snr(const at::Tensor& timesteps) const;
  // Min-SNR-gamma loss weights: min(SNR, gamma)/SNR (eps) or min(SNR, gamma)/(SNR+1) (v).
  at::Tensor min_snr_weights(const at::Tensor& timesteps, double gamma) const;

 private:
  // (sqrt(a_t), sqrt(1-a_t)) shaped to broadcast against `like`.
  std::pair<at::Tensor, at::Tensor> coefficients(const at::Tensor& timesteps, const at::Tensor& like) const;
  ScheduleConfig config_;
  at::Tensor betas_, alphas_cumprod_;
};

// Inference timesteps for `steps` steps: "leading" (SD/SDXL: arange(steps)*T//steps reversed + offset) or
// "trailing". int64 [steps], descending.
at::Tensor inference_timesteps(const ScheduleConfig& config, int64_t steps);

}  // namespace prefdiff::diffusion
