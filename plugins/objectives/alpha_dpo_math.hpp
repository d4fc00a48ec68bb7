// Numerically stable alpha-DPO loss and gradient for a given alpha in [0, 1] (alpha is a stop-gradient
// constant). With u = sigma(h), v = sigma(-h), L = log u:
//   l(h; a)   = [u^a - (1-a) - a*u] / (a*(a-1))           (released code, main.py L1121-1148)
//   dl/dh     = (u^a - u)*v/(a-1) = u^a * v * L * E((1-a)*L),   E(x) = expm1(x)/x.
// The spec's stable forms ([u L E((a-1)L) + v]/a for a >= 0.5, [L E(aL) + v]/(a-1) for a < 0.5) are used
// for h <= 0, with u*E((a-1)L) rewritten as u^a*E((1-a)L): the same number, but it cannot overflow to
// 0*inf when L ~ -1e4. For h > 0 both spec forms cancel catastrophically (two O(v) terms leave an O(v^2)
// loss, so at h = 40 nothing is left); there the O(v) parts are cancelled analytically:
//   G = L + v                       (computed as a series in z = t/(2+t), t = e^-h; all terms negative)
//   a >= 0.5: l = [G - v*L + (a-1)*u*L^2*F((a-1)L)] / a
//   a <  0.5: l = [a*L^2*F(a*L) + G] / (a-1),        F(x) = (e^x - 1 - x)/x^2,
// every term O(v^2) with at most a factor 2 of cancellation. Both ends a = 0 and a = 1 are the exact
// limits (-L - v and u*L + v), never 0/0.
#ifndef PREFDIFF_PLUGINS_ALPHA_DPO_MATH_HPP
#define PREFDIFF_PLUGINS_ALPHA_DPO_MATH_HPP

#include <cmath>

#include "prefdiff/objective_math.hpp"

namespace prefdiff::objectives::alpha_math {

using prefdiff::sdk::math::expm1_minus_x_over_x2;  // F(x), shared through the SDK

// G(h) = log sigma(h) + sigma(-h) for h > 0, where it is ~ -v^2/2. With t = e^-h, v = t/(1+t) and
// z = t/(2+t): log(1-v) = -2*atanh(z), so G = -v*z - 2*(z^3/3 + z^5/5 + ...), z <= 1/3.
inline double log_sigmoid_plus_sigmoid_neg(double h) {
  const double t = std::exp(-h);
  const double v = t / (1.0 + t), z = t / (2.0 + t), z2 = z * z;
  double power = z * z2, series = 0.0;
  for (int k = 3; k < 80; k += 2) {
    const double term = power / k;
    series += term;
    if (term <= 1e-17 * series) break;
    power *= z2;
  }
  return -v * z - 2.0 * series;
}

inline double loss(double h, double alpha) {
  namespace m = prefdiff::sdk::math;
  const double log_u = m::log_sigmoid(h);
  const double v = m::sigmoid(-h);
  if (h <= 0.0) {
    if (alpha >= 0.5)
      return (std::exp(alpha * log_u) * log_u * m::expm1_over_x((1.0 - alpha) * log_u) + v) / alpha;
    return (log_u * m::expm1_over_x(alpha * log_u) + v) / (alpha - 1.0);
  }
  const double g = log_sigmoid_plus_sigmoid_neg(h);
  const double l2 = log_u * log_u;
  if (alpha >= 0.5) {
    const double u = m::sigmoid(h);
    return (g - v * log_u + (alpha - 1.0) * u * l2 * expm1_minus_x_over_x2((alpha - 1.0) * log_u)) / alpha;
  }
  return (alpha * l2 * expm1_minus_x_over_x2(alpha * log_u) + g) / (alpha - 1.0);
}

inline double dloss_dh(double h, double alpha) {
  namespace m = prefdiff::sdk::math;
  const double log_u = m::log_sigmoid(h);
  return std::exp(alpha * log_u) * m::sigmoid(-h) * log_u * m::expm1_over_x((1.0 - alpha) * log_u);
}

}  // namespace prefdiff::objectives::alpha_math

#endif  // PREFDIFF_PLUGINS_ALPHA_DPO_MATH_HPP
