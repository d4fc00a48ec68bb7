// alpha-DPO against independent quad-precision references (libquadmath), over h in [-40, 40] and alpha
// from 1e-12 to 1 - 1e-12: the textbook formula for h <= 0 (33 digits leave >= 20 after its
// cancellation), and the binomial series l = sum_{k>=2} c_k v^k, c_k = prod_{j=2}^{k-1}(j-a)/k! (all
// terms positive) for h > 0, where the textbook formula cancels to nothing.
#include <quadmath.h>

#include "prefdiff/objective_math.hpp"
#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

using quad = __float128;

quad sigmoid_q(quad h) { return 1 / (1 + expq(-h)); }

// The textbook [u^a - (1-a) - a*u]/(a(a-1)), with u^a - 1 taken as expm1(a log u) so that alpha down
// to the smallest subnormal keeps its information.
quad textbook_loss(quad h, quad a) {
  const quad u = sigmoid_q(h), v = sigmoid_q(-h);
  return (expm1q(a * logq(u)) + a * v) / (a * (a - 1));
}
// Gradient: (u^a - u) v/(a-1) with powq, whose difference keeps ~24 digits even at a = 1 - 1e-12.
quad textbook_grad(quad h, quad a) {
  const quad u = sigmoid_q(h), v = sigmoid_q(-h);
  return (powq(u, a) - u) * v / (a - 1);
}

// Series in v = sigma(-h) <= 1/2: loss and dl/dh = (dl/dv) * (-u v).
void series(quad h, quad a, quad* loss, quad* grad) {
  const quad v = sigmoid_q(-h), u = sigmoid_q(h);
  quad c = quad(0.5), vk = v * v, l = 0, dl_dv = 0;  // c_2 = 1/2
  for (int k = 2; k < 5000; ++k) {
    l += c * vk;
    dl_dv += k * c * vk / v;
    if (c * vk < quad(1e-40) * l) break;
    c *= (k - a) / (k + 1);
    vk *= v;
  }
  *loss = l;
  *grad = -dl_dv * u * v;
}

void reference(double h, double alpha, double* loss, double* grad) {
  quad l, g;
  if (h <= 0) {
    l = textbook_loss(h, alpha);
    g = textbook_grad(h, alpha);
  } else {
    series(h, alpha, &l, &g);
  }
  *loss = static_cast<double>(l);
  *grad = static_cast<double>(g);
}

const std::vector<double> kH = {-40, -20, -5, -1, -0.1, -1e-9, 0, 1e-9, 0.1, 0.5, 1, 3, 10, 20, 30, 40};

TEST(AlphaAccuracy, ReferencesAgreeWhereBothApply) {
  for (double a : {1e-12, 0.5, 1 - 1e-12})
    for (double h : {0.5, 1.0, 3.0}) {
      quad l, g;
      series(h, a, &l, &g);
      EXPECT_LT(fabsq((l - textbook_loss(h, a)) / l), quad(1e-18));
      EXPECT_LT(fabsq((g - textbook_grad(h, a)) / g), quad(1e-18));
    }
}

TEST(AlphaAccuracy, FixedAlphaMatchesQuadReference) {
  const std::vector<double> alphas = {1e-12, 1e-6, 0.1, 0.3, 0.49999, 0.5, 0.7, 0.9999, 1 - 1e-6, 1 - 1e-12};
  double worst_loss = 0, worst_grad = 0, worst_at_ends = 0;
  for (double a : alphas) {
    const AtMargins got = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", a)}, kH);
    for (size_t i = 0; i < kH.size(); ++i) {
      double loss, grad;
      reference(kH[i], a, &loss, &grad);
      const double el = relative_error(got.loss[i], loss), eg = relative_error(got.dloss_dh[i], grad);
      EXPECT_LE(el, 1e-13) << "loss alpha=" << a << " h=" << kH[i] << " got " << got.loss[i] << " ref " << loss;
      EXPECT_LE(eg, 1e-13) << "dl/dh alpha=" << a << " h=" << kH[i] << " got " << got.dloss_dh[i] << " ref " << grad;
      worst_loss = std::max(worst_loss, el);
      worst_grad = std::max(worst_grad, eg);
      if (a == 1e-12 || a == 1 - 1e-12) worst_at_ends = std::max({worst_at_ends, el, eg});
    }
  }
  std::printf("alpha-DPO vs quad reference, h in [-40,40]: worst relative error loss %.3g, dl/dh %.3g; "
              "at alpha = 1e-12 and 1-1e-12: %.3g\n", worst_loss, worst_grad, worst_at_ends);
}

TEST(AlphaAccuracy, PerSampleAlphaNearZero) {
  // alpha_i = mu * sigma(h_i) -> 0 as h_i -> -inf; down to 0 exactly once sigma underflows.
  const std::vector<double> h = {-1e4, -745, -700, -100, -40, -10, -1, 0, 1, 10, 40};
  const double mu = 0.9999;
  const AtMargins got = evaluate("alpha_dpo", {text("alpha_mode", "per-sample"), real("mu", mu)}, h);
  double worst = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got.loss[i]) && std::isfinite(got.dloss_dh[i])) << "h=" << h[i];
    const double a = mu * prefdiff::sdk::math::sigmoid(h[i]);
    if (a == 0.0) {  // the alpha -> 0 limit: -log u + u - 1 = softplus(-h) - v, gradient -v^2
      EXPECT_LE(relative_error(got.loss[i], -h[i] - 1.0), 1e-15);
      EXPECT_EQ(got.dloss_dh[i], -1.0);
      continue;
    }
    double loss, grad;
    reference(h[i], a, &loss, &grad);
    worst = std::max({worst, relative_error(got.loss[i], loss), relative_error(got.dloss_dh[i], grad)});
    EXPECT_LE(relative_error(got.loss[i], loss), 1e-13) << "h=" << h[i];
    EXPECT_LE(relative_error(got.dloss_dh[i], grad), 1e-13) << "h=" << h[i];
  }
  std::printf("per-sample alpha near 0: worst relative error %.3g\n", worst);
}

TEST(AlphaAccuracy, PerSampleIsFixedAlphaAtEachPair) {
  // Per-sample alpha is a per-pair stop-gradient constant: each pair must equal fixed mode at its own
  // alpha_i bit for bit (the fixed mode's gradient is checked by finite differences in the kit).
  const std::vector<double> h = {-30, -3, -0.2, 0, 0.7, 4, 25};
  const double mu = 0.95;
  const AtMargins per = evaluate("alpha_dpo", {text("alpha_mode", "per-sample"), real("mu", mu)}, h);
  double mean_alpha = 0;
  for (size_t i = 0; i < h.size(); ++i) {
    const double a = mu * prefdiff::sdk::math::sigmoid(h[i]);
    mean_alpha += a / h.size();
    const AtMargins fixed = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", a)}, {h[i]});
    EXPECT_EQ(per.loss[i], fixed.loss[0]) << "h=" << h[i];
    EXPECT_EQ(per.dloss_dh[i], fixed.dloss_dh[0]) << "h=" << h[i];
  }
  EXPECT_LE(relative_error(per.diagnostics[0], mean_alpha), 1e-15);
}

TEST(AlphaAccuracy, StartStepHoldsAlphaAtMu) {
  const std::vector<double> h = {-5, -1, 0, 0.5, 3};
  const pc::Params params = {integer("start_step", 10), real("mu", 0.9999)};
  const AtMargins before = evaluate("alpha_dpo", params, h, 9);
  const AtMargins after = evaluate("alpha_dpo", params, h, 10);
  EXPECT_EQ(before.diagnostics[0], 0.9999);
  EXPECT_LE(relative_error(after.diagnostics[0], 0.470086532709107), 1e-12);
  const AtMargins fixed = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 0.9999)}, h);
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(before.loss[i], fixed.loss[i]);
  // Released default start_step = -1: dynamic from step 0.
  EXPECT_LE(relative_error(evaluate("alpha_dpo", {}, h, 0).diagnostics[0], 0.470086532709107), 1e-12);
}

}  // namespace
}  // namespace prefdiff_test
