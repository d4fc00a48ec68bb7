#include "prefdiff/diffusion/noise_schedule.hpp"

#include <ATen/ATen.h>

#include <cmath>

namespace prefdiff::diffusion {

ScheduleConfig ScheduleConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  ScheduleConfig c;
  std::vector<std::string> problems;
  auto num = [&](const char* k, double def) {
    if (!j.contains(k) || j[k].is_null()) return def;
    if (!j[k].is_number()) {
      problems.push_back(std::string("'") + k + "' must be a number");
      return def;
    }
    return j[k].get<double>();
  };
  auto str = [&](const char* k, const std::string& def) {
    if (!j.contains(k) || j[k].is_null()) return def;
    if (!j[k].is_string()) {
      problems.push_back(std::string("'") + k + "' must be a string");
      return def;
    }
    return j[k].get<std::string>();
  };
  auto must_be = [&](const char* k, const nlohmann::json& ok) {
    if (j.contains(k) && !j[k].is_null() && j[k] != ok)
      problems.push_back(std::string("'") + k + "' = " + j[k].dump() + " is not supported (only " + ok.dump() + ")");
  };
  c.num_train_timesteps = static_cast<int64_t>(num("num_train_timesteps", 1000));
  c.beta_start = num("beta_start", 0.0001);
  c.beta_end = num("beta_end", 0.02);
  c.beta_schedule = str("beta_schedule", "linear");
  c.steps_offset = static_cast<int64_t>(num("steps_offset", 0));
  c.timestep_spacing = str("timestep_spacing", "leading");
  c.set_alpha_to_one = j.value("set_alpha_to_one", true);
  std::string pt = str("prediction_type", "epsilon");
  if (pt == "epsilon") c.prediction_type = PredictionType::kEpsilon;
  else if (pt == "v_prediction") c.prediction_type = PredictionType::kVPrediction;
  else problems.push_back("'prediction_type' = \"" + pt + "\" is not supported (epsilon, v_prediction)");
  if (c.beta_schedule != "scaled_linear" && c.beta_schedule != "linear")
    problems.push_back("'beta_schedule' = \"" + c.beta_schedule + "\" is not supported (scaled_linear, linear)");
  if (c.timestep_spacing != "leading" && c.timestep_spacing != "trailing")
    problems.push_back("'timestep_spacing' = \"" + c.timestep_spacing + "\" is not supported (leading, trailing)");
  if (c.num_train_timesteps < 2) problems.push_back("'num_train_timesteps' must be >= 2");
  must_be("trained_betas", nullptr);
  must_be("rescale_betas_zero_snr", false);
  must_be("thresholding", false);
  must_be("use_karras_sigmas", false);
  must_be("interpolation_type", "linear");
  must_be("timestep_type", "discrete");
  must_be("final_sigmas_type", "zero");
  must_be("sigma_min", nullptr);
  must_be("sigma_max", nullptr);
  if (j.value("_class_name", "") == "DDIMScheduler") must_be("clip_sample", false);
  if (!problems.empty()) {
    std::string msg = origin + ": unsupported scheduler config:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw ScheduleError(msg);
  }
  return c;
}

NoiseSchedule::NoiseSchedule(const ScheduleConfig& config, c10::ScalarType dtype) : config_(config) {
  auto opts = at::TensorOptions().dtype(dtype);
  int64_t n = config.num_train_timesteps;
  if (config.beta_schedule == "scaled_linear")
    betas_ = at::pow(at::linspace(std::sqrt(config.beta_start), std::sqrt(config.beta_end), n, opts), 2);
  else if (config.beta_schedule == "linear")
    betas_ = at::linspace(config.beta_start, config.beta_end, n, opts);
  else
    throw ScheduleError("beta_schedule \"" + config.beta_schedule + "\" is not supported");
  alphas_cumprod_ = at::cumprod(1.0 - betas_, 0);
}

std::pair<at::Tensor, at::Tensor> NoiseSchedule::coefficients(const at::Tensor& timesteps, const at::Tensor& like) const {
  // As diffusers: the float32 table is cast to the sample dtype before indexing and the square roots.
  at::Tensor ac = alphas_cumprod_.to(like.device(), like.scalar_type());
  at::Tensor a = ac.index_select(0, timesteps.to(like.device()).to(at::kLong).flatten());
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = -1;
  return {at::sqrt(a).view(shape), at::sqrt(1 - a).view(shape)};
}

at::Tensor NoiseSchedule::add_noise(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  auto [sa, s1a] = coefficients(timesteps, x0);
  return sa * x0 + s1a * noise;
}

at::Tensor NoiseSchedule::velocity(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  auto [sa, s1a] = coefficients(timesteps, x0);
  return sa * noise - s1a * x0;
}

at::Tensor NoiseSchedule::target(const at::Tensor& x0, const at::Tensor& noise, const at::Tensor& timesteps) const {
  return config_.prediction_type == PredictionType::kEpsilon ? noise : velocity(x0, noise, timesteps);
}

at::Tensor NoiseSchedule::snr(const at::Tensor& timesteps) const {
  at::Tensor a = alphas_cumprod_.index_select(0, timesteps.cpu().to(at::kLong).flatten());
  at::Tensor ratio = at::sqrt(a) / at::sqrt(1.0 - a);
  return (ratio * ratio).to(timesteps.device());
}

at::Tensor NoiseSchedule::min_snr_weights(const at::Tensor& timesteps, double gamma) const {
  at::Tensor s = snr(timesteps);
  at::Tensor clipped = at::clamp_max(s, gamma);
  return config_.prediction_type == PredictionType::kEpsilon ? clipped / s : clipped / (s + 1);
}

at::Tensor inference_timesteps(const ScheduleConfig& config, int64_t steps) {
  int64_t t = config.num_train_timesteps;
  if (steps < 1 || steps > t)
    throw ScheduleError("number of inference steps must be in [1, " + std::to_string(t) + "], got " + std::to_string(steps));
  std::vector<int64_t> out(steps);
  if (config.timestep_spacing == "leading") {
    int64_t ratio = t / steps;
    for (int64_t i = 0; i < steps; ++i) out[i] = (steps - 1 - i) * ratio + config.steps_offset;
  } else {  // trailing: round(arange(T, 0, -T/steps)) - 1
    double ratio = static_cast<double>(t) / steps;
    for (int64_t i = 0; i < steps; ++i) out[i] = static_cast<int64_t>(std::nearbyint(t - i * ratio)) - 1;  // np.round: half to even
  }
  return at::tensor(out, at::kLong);
}

}  // namespace prefdiff::diffusion
