#include "prefdiff/optim/schedule.hpp"
#include "prefdiff/optim/optimizer.hpp"

#include <algorithm>
#include <cmath>

namespace prefdiff::optim {

LrSchedule::LrSchedule(ScheduleKind kind, double peak_lr, int64_t warmup_steps, int64_t total_steps,
                       double min_lr_ratio)
    : kind_(kind), peak_lr_(peak_lr), warmup_steps_(warmup_steps), total_steps_(total_steps), min_lr_ratio_(min_lr_ratio) {
  if (!(peak_lr > 0)) throw OptimError("learning-rate schedule: optim.lr must be > 0, got " + std::to_string(peak_lr));
  if (warmup_steps < 0)
    throw OptimError("learning-rate schedule: schedule.warmup_steps must be >= 0, got " + std::to_string(warmup_steps));
  if (total_steps < 1)
    throw OptimError("learning-rate schedule: train.steps must be >= 1, got " + std::to_string(total_steps));
  if (!(min_lr_ratio >= 0 && min_lr_ratio <= 1))
    throw OptimError("learning-rate schedule: schedule.min_lr_ratio must be in [0, 1], got " + std::to_string(min_lr_ratio));
}

double LrSchedule::factor_at(int64_t step) const {
  if (kind_ == ScheduleKind::kConstant) return 1.0;
  // Linear warm-up, as diffusers: step / max(1, warmup) while step < warmup.
  if (step < warmup_steps_) return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps_));
  if (kind_ == ScheduleKind::kConstantWithWarmup) return 1.0;
  // Half a cosine from the end of the warm-up to total_steps (diffusers' num_cycles = 0.5), then held at the floor.
  const double progress = static_cast<double>(step - warmup_steps_) /
                          static_cast<double>(std::max<int64_t>(1, total_steps_ - warmup_steps_));
  const double pi = std::acos(-1.0);
  const double cosine = 0.5 * (1.0 + std::cos(pi * 0.5 * 2.0 * progress));
  if (progress >= 1.0) return min_lr_ratio_;  // diffusers' max(0, ...) would climb again past the end
  return std::max(0.0, cosine * (1.0 - min_lr_ratio_) + min_lr_ratio_);
}

std::string LrSchedule::name() const {
  switch (kind_) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kConstantWithWarmup: return "constant_with_warmup";
    case ScheduleKind::kCosine: return "cosine";
  }
  return "";
}

}  // namespace prefdiff::optim
