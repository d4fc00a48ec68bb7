#include "prefdiff/optim/ema.hpp"
#include "state_io.hpp"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

#include <algorithm>

namespace prefdiff::optim {
namespace {
at::ScalarType shadow_dtype(const at::Tensor& p) { return p.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }
}  // namespace

Ema::Ema(const NamedTensors& named_parameters, double decay, bool warmup)
    : params_(named_parameters), decay_(decay), warmup_(warmup) {
  if (!(decay > 0 && decay < 1))
    throw OptimError("ema: train.ema_decay must be in (0, 1), got " + std::to_string(decay) +
                     "\nHINT: ema_decay = 0 disables the EMA; the trainer then creates none");
  detail::check_parameters(named_parameters, "ema");
  c10::NoGradGuard no_grad;
  for (const auto& [name, p] : params_)
    shadow_.emplace_back(name, p.detach().to(shadow_dtype(p), /*non_blocking=*/false, /*copy=*/true));
}

double Ema::decay_at(int64_t n) const {
  if (!warmup_) return decay_;
  if (n <= 1) return 0.0;
  return std::min(decay_, static_cast<double>(n) / static_cast<double>(n + 9));
}

void Ema::update() {
  if (applied())
    throw OptimError("ema: update() while the averaged weights are applied; restore() (or leave the EmaScope) first");
  c10::NoGradGuard no_grad;
  num_updates_ += 1;
  const double one_minus = 1.0 - decay_at(num_updates_);
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& s = shadow_[i].second;
    s.sub_((s - params_[i].second.to(s.scalar_type())).mul_(one_minus));
  }
}

NamedTensors Ema::state() const {
  NamedTensors out;
  out.reserve(shadow_.size() + 1);
  out.emplace_back("ema_step", detail::step_tensor(num_updates_));
  for (const auto& [name, s] : shadow_) out.emplace_back("ema." + name, s);
  return out;
}

void Ema::load_state(const NamedTensors& state) {
  std::vector<std::string> problems;
  std::vector<std::string> names;
  for (const auto& np : params_) names.push_back(np.first);
  // "ema_step" has no parameter part; take it out before grouping the per-parameter entries.
  NamedTensors per_param;
  at::Tensor step_entry;
  for (const auto& e : state) {
    if (e.first == "ema_step") step_entry = e.second;
    else per_param.push_back(e);
  }
  int64_t step = -1;
  if (!step_entry.defined()) problems.push_back("missing state entry 'ema_step'");
  else step = detail::take_step({{"ema_step", step_entry}}, "ema_step", "", problems);
  const auto grouped = detail::group_state(per_param, names, {"ema"}, problems);
  std::vector<at::Tensor> loaded(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const at::Tensor& s = shadow_[i].second;
    loaded[i] = detail::take_tensor(grouped[i], "ema", names[i], s.sizes(), s.options(), problems);
  }
  detail::throw_if_problems("ema: cannot load state", problems,
                            "load the EMA saved by a run of the same model with train.ema_decay > 0");
  for (size_t i = 0; i < params_.size(); ++i) shadow_[i].second = loaded[i];
  num_updates_ = step;
}

void Ema::apply() {
  if (applied()) throw OptimError("ema: apply() twice without restore()");
  c10::NoGradGuard no_grad;
  backup_.reserve(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor& p = params_[i].second;
    backup_.push_back(p.detach().clone());
    p.copy_(shadow_[i].second);
  }
}

void Ema::restore() {
  if (!applied()) throw OptimError("ema: restore() without apply()");
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) params_[i].second.copy_(backup_[i]);
  backup_.clear();
}

}  // namespace prefdiff::optim
