#pragma once
// Exponential moving average of the policy's parameters, as diffusers' EMAModel with its defaults
// (update_after_step=0, use_ema_warmup=False, min_decay=0): the n-th update (n = 1, 2, ...) uses
//   d_n = 0 for n = 1, else min(decay, n / (n + 9))      (diffusers' (1 + k) / (10 + k), k = n - 1)
//   shadow -= (1 - d_n) * (shadow - param)
// or d_n = decay throughout with warmup = false. The shadow is kept in float32 (float64 parameters stay
// float64): in bf16 an update of (1 - 0.9999) * difference would round away.

#include "prefdiff/optim/optimizer.hpp"

#include <cstdint>

namespace prefdiff::optim {

class Ema {
 public:
  // decay in (0, 1). The shadow starts as a copy of the parameters.
  Ema(const NamedTensors& named_parameters, double decay, bool warmup = true);

  // Call after each optimizer step.
  void update();
  int64_t num_updates() const { return num_updates_; }
  double decay_at(int64_t n) const;  // the decay used by the n-th update
  double decay() const { return decay_; }
  const NamedTensors& shadow() const { return shadow_; }

  // "ema.<param>" (float32 shadow, aliasing the live state) and "ema_step" (int64, 0-dim, CPU).
  NamedTensors state() const;
  void load_state(const NamedTensors& state);  // every name must be present, shapes must match

  // Evaluation with the averaged weights: apply() copies the shadow into the parameters and keeps the
  // training values; restore() puts them back bit-exactly. Prefer EmaScope.
  void apply();
  void restore();
  bool applied() const { return !backup_.empty(); }

 private:
  NamedTensors params_;
  NamedTensors shadow_;
  std::vector<at::Tensor> backup_;
  double decay_;
  bool warmup_;
  int64_t num_updates_ = 0;
};

// Averaged weights inside a scope: EmaScope s(ema); evaluate(unet);  -> training weights back on exit.
class EmaScope {
 public:
  explicit EmaScope(Ema& ema) : ema_(ema) { ema_.apply(); }
  ~EmaScope() {
    if (ema_.applied()) ema_.restore();
  }
  EmaScope(const EmaScope&) = delete;
  EmaScope& operator=(const EmaScope&) = delete;

 private:
  Ema& ema_;
};

}  // namespace prefdiff::optim
