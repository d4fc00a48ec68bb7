// DMPO's loss, the KL divergence of Bernoulli(sigma(h)) from Bernoulli(q), q = 1 - alpha, as the
// Diffusion-SDPO authors' train.py computes it (train_method 'dmpo'). With k = logit(q) = log((1-alpha)/alpha),
// u = sigma(h), v = sigma(-h) and s = h - k it is the Bregman divergence of softplus(-x) between k and h:
//   D(h) = u log(u/q) + v log(v/(1-q)) = softplus(-k) - softplus(-h) - v s,     dD/dh = u v s.
// Zero at h = k, tending to -log(q) as h -> +inf and to -log(alpha) as h -> -inf; the gradient vanishes at
// both ends. The direct forms cancel near h = k (D ~ u v s^2 / 2 there) and for h -> -inf, so:
//   |s| <= 1:       D = v s^2 [F(s) - v E(s)^2 G(y)],  y = v expm1(s),  E = expm1(x)/x,
//                   F(x) = (e^x-1-x)/x^2, G(y) = (y - log1p y)/y^2: every factor is O(1), the bracket ~ u/2
//   s > 1:          D = log1p(y) - v s with y = v expm1(s) = e^-k u - v (no overflow)
//   s < -1, h >= 0: D = softplus(-k) - softplus(-h) - v s
//   s < -1, h < 0:  D = softplus(-k) + v k + u h - softplus(h)   (no O(|h|) terms left to cancel)
// Each branch loses at most ~3 bits (measured against 50-digit references, tests/objectives).
#ifndef PREFDIFF_PLUGINS_DMPO_MATH_HPP
#define PREFDIFF_PLUGINS_DMPO_MATH_HPP

#include <cmath>

#include "objective_common.hpp"
#include "prefdiff/objective_math.hpp"

namespace prefdiff::objectives::dmpo_math {

// k = logit(1 - alpha) = log((1-alpha)/alpha), the margin DMPO pulls every pair to (ln 99 at alpha = 0.01),
// as hi + lo: near h = k the loss is ~ u v (h-k)^2/2, so s = h - k must not inherit k's rounding (which
// alone would cost 1e-13 relative at |s| ~ 1e-2). The logs are taken in long double (64 or 113 bits) once
// per instance, as log1p(-alpha) - log(alpha) below 1/4 and as log1p((1 - 2 alpha)/alpha) above, where
// 1 - 2 alpha is exact and the two logs would cancel (k -> 0 as alpha -> 1/2).
struct TargetMargin {
  double hi = 0.0, lo = 0.0;
  double difference(double h) const { return (h - hi) - lo; }  // h - hi is exact where it matters (Sterbenz)
};

inline TargetMargin target_margin(double alpha) {
  const long double a = alpha;
  const long double k = alpha < 0.25 ? std::log1p(-a) - std::log(a) : std::log1p(static_cast<long double>(1.0 - 2.0 * alpha) / a);
  TargetMargin t;
  t.hi = static_cast<double>(k);
  t.lo = static_cast<double>(k - static_cast<long double>(t.hi));
  return t;
}

inline double loss(double h, const TargetMargin& k) {
  namespace m = prefdiff::sdk::math;
  const double s = k.difference(h);
  const double u = m::sigmoid(h), v = m::sigmoid(-h);
  if (std::fabs(s) <= 1.0) {
    const double y = v * std::expm1(s);
    const double e = m::expm1_over_x(s);
    return v * s * s * (m::expm1_minus_x_over_x2(s) - v * e * e * m::x_minus_log1p_over_x2(y));
  }
  if (s > 1.0) return std::log1p(std::exp(-k.hi) * u - v) - v * s;
  if (h >= 0.0) return m::softplus(-k.hi) - m::softplus(-h) - v * s;
  return m::softplus(-k.hi) + v * k.hi + u * h - m::softplus(h);
}

inline double dloss_dh(double h, const TargetMargin& k) {
  namespace m = prefdiff::sdk::math;
  return m::sigmoid(h) * m::sigmoid(-h) * k.difference(h);
}

}  // namespace prefdiff::objectives::dmpo_math

namespace prefdiff::objectives {

// The dmpo_alpha parameter, shared by dmpo and sdpo (base_objective = "dmpo").
inline sdk::ParamSpec dmpo_alpha_param() {
  return sdk::ParamSpec::real("dmpo_alpha", 0.01,
                              "alpha of DMPO's target Bernoulli(1 - alpha): every pair is pulled to the margin "
                              "h* = log((1-alpha)/alpha) (ln 99 = 4.6 at 0.01). Default 0.01: the released SD1.5 "
                              "and SDXL scripts (--dmpo_alpha). Smaller alpha = larger target margin.")
      .min(1e-6)
      .max(0.5, /*exclusive=*/true)
      .range_note("dmpo_alpha must be in [1e-6, 0.5): the released code clamps 1 - alpha to [1e-6, 1 - 1e-6] (at "
                  "alpha = 0 the KL is infinite), and from 0.5 on the target no longer prefers the winner.");
}

inline double checked_dmpo_alpha(const sdk::Params& params, const std::string& plugin_id) {
  return checked_real(params, plugin_id, "dmpo_alpha", 1e-6, false, 0.5, true,
                      "Use dmpo_alpha in [1e-6, 0.5); the released scripts use 0.01.");
}

}  // namespace prefdiff::objectives

#endif  // PREFDIFF_PLUGINS_DMPO_MATH_HPP
