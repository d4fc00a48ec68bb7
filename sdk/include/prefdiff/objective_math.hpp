// Numerically stable scalar helpers for preference objectives, shared by first- and third-party
// plugins. Header-only, standard library only.
#ifndef PREFDIFF_OBJECTIVE_MATH_HPP
#define PREFDIFF_OBJECTIVE_MATH_HPP

#include <cmath>
#include <cstddef>
#include <cstdio>

#include "prefdiff/sdk.hpp"

namespace prefdiff::sdk::math {

// log(1 + exp(x)) without overflow or cancellation.
inline double softplus(double x) {
  return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
}

// sigma(x) = 1 / (1 + exp(-x)), accurate in both tails.
inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

// log sigma(x) = -softplus(-x).
inline double log_sigmoid(double x) { return -softplus(-x); }

// E(x) = expm1(x) / x with E(0) = 1; accurate for all finite x.
inline double expm1_over_x(double x) {
  if (std::fabs(x) < 1e-8) return 1.0 + 0.5 * x;  // next term x^2/6 is below double precision here
  return std::expm1(x) / x;
}

// F(x) = (e^x - 1 - x) / x^2, F(0) = 1/2. Taylor series sum_k x^k/(k+2)! where |x| < 1, the direct form
// elsewhere (at most ~2 bits of cancellation there).
inline double expm1_minus_x_over_x2(double x) {
  if (std::fabs(x) >= 1.0) return (std::expm1(x) - x) / (x * x);
  double term = 0.5, sum = 0.5;
  for (int k = 3; k < 40; ++k) {
    term *= x / k;
    sum += term;
    if (std::fabs(term) <= 1e-17 * std::fabs(sum)) break;
  }
  return sum;
}

// G(y) = (y - log(1 + y)) / y^2 for y > -1, G(0) = 1/2. Series sum_{n>=2} (-1)^n y^(n-2)/n where
// |y| < 0.5, the direct form elsewhere (at most ~3 bits of cancellation at |y| = 0.5).
inline double x_minus_log1p_over_x2(double y) {
  if (std::fabs(y) >= 0.5) return (y - std::log1p(y)) / (y * y);
  double power = 1.0, sum = 0.0;
  for (int n = 2; n < 80; ++n) {
    const double term = power / n;
    sum += term;
    if (std::fabs(term) <= 1e-17 * std::fabs(sum)) break;
    power *= -y;
  }
  return sum;
}

// psi(x) = x / (e^x - 1), psi(0) = 1; accurate for all finite x (no overflow for large x).
inline double x_over_expm1(double x) {
  if (x == 0.0) return 1.0;
  if (x > 1.0) return x * std::exp(-x) / -std::expm1(-x);
  return x / std::expm1(x);
}

// psi'(x) = [(e^x - 1) - x e^x] / (e^x - 1)^2, psi'(0) = -1/2; in (-1, 0) for every x. The numerator
// cancels near 0, so there it is -x^2 P(x), P(x) = sum_{n>=2} (n-1) x^(n-2)/n!, and
// psi' = -P(x) / E(x)^2 with E(x) = expm1(x)/x.
inline double x_over_expm1_derivative(double x) {
  if (x > 1.0) {
    const double t = std::exp(-x), one_minus_t = -std::expm1(-x);
    return t * ((1.0 - x) - t) / (one_minus_t * one_minus_t);
  }
  if (x < -1.0) {
    const double d = std::expm1(x);
    return (d - x * std::exp(x)) / (d * d);
  }
  double term = 0.5, p = 0.0;  // term = x^(n-2)/n!, from n = 2
  for (int n = 2; n < 40; ++n) {
    const double add = (n - 1) * term;
    p += add;
    if (std::fabs(add) <= 1e-17 * std::fabs(p)) break;
    term *= x / (n + 1);
  }
  const double e = expm1_over_x(x);
  return -p / (e * e);
}

// The Diffusion-DPO logit h = -0.5 * beta * ((model_w - ref_w) - (model_l - ref_l)).
inline double dpo_margin(double beta, double model_w, double model_l, double ref_w, double ref_l) {
  return -0.5 * beta * ((model_w - ref_w) - (model_l - ref_l));
}

// Fills margin[i] for every pair of the batch. Finite inputs can still overflow h (huge MSEs times
// beta); an infinite margin would poison the loss, so it is reported as a non-finite input instead.
inline void dpo_margins(double beta, const ObjectiveBatch& batch, double* margin) {
  for (std::size_t i = 0; i < batch.count; ++i) {
    margin[i] = dpo_margin(beta, batch.model_w[i], batch.model_l[i], batch.ref_w[i], batch.ref_l[i]);
    if (!std::isfinite(margin[i])) {
      char text[512];
      std::snprintf(text, sizeof(text),
                    "pair %zu: the margin h = -0.5*beta*((model_w-ref_w)-(model_l-ref_l)) overflows (beta=%.17g, "
                    "model_w=%.17g, model_l=%.17g, ref_w=%.17g, ref_l=%.17g). HINT: the host must pass per-image "
                    "mean squared errors, not sums.",
                    i, beta, batch.model_w[i], batch.model_l[i], batch.ref_w[i], batch.ref_l[i]);
      throw Error(PD_ERR_NON_FINITE, text);
    }
  }
}

// Chain rule from dl/dh to the two denoising errors: dh/dmodel_w = -beta/2, dh/dmodel_l = +beta/2.
inline void write_margin_gradient(double beta, double dloss_dh, std::size_t i, ObjectiveResult& result) {
  result.dloss_dmodel_w[i] = dloss_dh * (-0.5 * beta);
  result.dloss_dmodel_l[i] = dloss_dh * (0.5 * beta);
}

}  // namespace prefdiff::sdk::math

#endif  // PREFDIFF_OBJECTIVE_MATH_HPP
