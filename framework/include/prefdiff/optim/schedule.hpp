#pragma once
// Learning-rate schedules of the [schedule] recipe section, as diffusers' get_scheduler:
//   constant              lr
//   constant_with_warmup  lr * min(1, step / warmup)                        (get_constant_schedule_with_warmup)
//   cosine                warm-up, then lr * (r + (1 - r) * 0.5 * (1 + cos(pi * progress)))
//                         with r = min_lr_ratio                             (get_cosine_schedule_with_warmup;
//                         r = 0 is diffusers exactly, r > 0 is transformers' cosine_with_min_lr)
// `step` counts the optimizer steps already taken, as LambdaLR's: the first update uses lr_at(0), which is 0
// during a warm-up (diffusers behaves the same). The official Diffusion-DPO script builds its scheduler with
// warmup x num_processes and accelerate steps it num_processes times per optimizer step, which gives the same
// learning rate per optimizer step as lr_at(optimizer steps taken).

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace prefdiff::optim {

enum class ScheduleKind { kConstant, kConstantWithWarmup, kCosine };

class LrSchedule {
 public:
  // Throws OptimError on negative warm-up, total_steps < 1, min_lr_ratio outside [0, 1], peak_lr <= 0.
  LrSchedule(ScheduleKind kind, double peak_lr, int64_t warmup_steps, int64_t total_steps, double min_lr_ratio = 0.0);

  double lr_at(int64_t step) const { return peak_lr_ * factor_at(step); }
  double factor_at(int64_t step) const;  // multiplier of the peak, as a LambdaLR lambda

  ScheduleKind kind() const { return kind_; }
  std::string name() const;  // as [schedule].name
  double peak_lr() const { return peak_lr_; }
  int64_t warmup_steps() const { return warmup_steps_; }
  int64_t total_steps() const { return total_steps_; }
  double min_lr_ratio() const { return min_lr_ratio_; }

 private:
  ScheduleKind kind_;
  double peak_lr_;
  int64_t warmup_steps_;
  int64_t total_steps_;
  double min_lr_ratio_;
};

// From the resolved [schedule] section (name, warmup_steps, min_lr_ratio; missing keys take the schema's
// defaults), the peak ([optim].lr) and the run length ([train].steps). "constant" ignores warmup_steps,
// as diffusers' get_constant_schedule does.
LrSchedule make_schedule(const nlohmann::json& schedule_section, double peak_lr, int64_t total_steps);

}  // namespace prefdiff::optim
