// sdpo alone: its relation to dpo and dmpo bit for bit, the safeguard it promises (lambda is the largest
// scale in [0, 1] that keeps the winners' first-order error decrease at mu times its unscaled rate), and
// its derivatives with error_ll != model_l. Against PyTorch autograd on the golden UNet:
// sdpo_golden_test.cpp.
#include <cstring>
#include <random>

#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

pc::Evaluation run(const std::string& stem, pc::Params params, const pc::Batch& batch) {
  const pc::PluginLibrary plugin = objective(stem);
  pc::ObjectiveInstance instance(plugin, pc::resolve_params(plugin, params));
  pc::Evaluation e = instance.try_evaluate(batch);
  EXPECT_EQ(e.status, PD_OK) << stem << ": " << e.message;
  return e;
}

// Pairs with realistic MSEs and error Gram entries of correlation rho (|rho| <= 1 keeps Cauchy-Schwarz).
pc::Batch batch_with_correlation(const std::vector<double>& rho, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> mse(0.05, 1.2), offset(-0.02, 0.02);
  pc::Batch batch;
  for (double r : rho) {
    const double rw = mse(rng), rl = mse(rng), ml = mse(rng);
    batch.ref_w.push_back(rw);
    batch.ref_l.push_back(rl);
    batch.model_l.push_back(ml);
    batch.model_w.push_back(std::max(1e-3, rw + (ml - rl) + offset(rng)));
    batch.error_ww.push_back(batch.model_w.back());
    batch.error_ll.push_back(ml);
    batch.error_wl.push_back(r * std::sqrt(batch.model_w.back() * ml));
  }
  return batch;
}

void expect_bitwise(const std::vector<double>& a, const std::vector<double>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(std::memcmp(&a[i], &b[i], sizeof(double)), 0) << what << "[" << i << "]";
}

TEST(Sdpo, IsTheBaseLossWithTheLosersGradientScaled) {
  const pc::Batch batch = batch_with_correlation({0.9, 0.7, 0.95, 0.8, 0.6, 0.99, 0.85, 0.75}, 3);
  for (const char* base : {"dpo", "dmpo"}) {
    SCOPED_TRACE(base);
    const pc::Evaluation s = run("sdpo", {text("base_objective", base), real("dmpo_alpha", 0.05)}, batch);
    const pc::Evaluation plain =
        std::string(base) == "dpo" ? run("dpo", {}, batch) : run("dmpo", {real("dmpo_alpha", 0.05)}, batch);
    const double lambda = s.diagnostics[0];
    EXPECT_GT(lambda, 0.0);
    EXPECT_LT(lambda, 1.0);
    // error_ll == model_l: the value and the winner's gradient are the base objective's, bit for bit.
    expect_bitwise(s.loss, plain.loss, "loss");
    expect_bitwise(s.margin, plain.margin, "margin");
    expect_bitwise(s.dloss_dmodel_w, plain.dloss_dmodel_w, "dloss_dmodel_w");
    for (size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(s.dloss_dmodel_l[i], lambda * plain.dloss_dmodel_l[i]) << i;
  }
}

TEST(Sdpo, UnalignedErrorsLeaveTheBaseObjectiveUntouched) {
  // S_wl <= 0 (the loser's step cannot raise the winner's error to first order): lambda = 1 exactly.
  const pc::Batch batch = batch_with_correlation({-0.5, 0.3, -0.6, 0.1, -0.2}, 5);
  const pc::Evaluation s = run("sdpo", {}, batch), plain = run("dpo", {}, batch);
  EXPECT_EQ(s.diagnostics[0], 1.0);
  expect_bitwise(s.loss, plain.loss, "loss");
  expect_bitwise(s.dloss_dmodel_w, plain.dloss_dmodel_w, "dloss_dmodel_w");
  expect_bitwise(s.dloss_dmodel_l, plain.dloss_dmodel_l, "dloss_dmodel_l");
}

TEST(Sdpo, LambdaIsTheLargestScaleThatPreservesTheWinner) {
  // In the released output-space proxy the winners' error changes at a rate proportional to
  // -(S_ww - lambda S_wl); the safeguard demands S_ww - lambda S_wl >= mu S_ww. lambda must satisfy it and
  // be the largest such value in [0, 1].
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> correlation(-0.3, 1.0), mu_draw(0.0, 1.0);
  int active = 0;
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<double> rho(1 + trial % 9);
    for (double& r : rho) r = correlation(rng);
    const pc::Batch batch = batch_with_correlation(rho, 100 + trial);
    const double mu = trial % 10 == 0 ? 1.0 : mu_draw(rng);
    const pc::Evaluation e = run("sdpo", {real("winner_preserving_mu", mu)}, batch);
    double s_ww = 0.0, s_wl = 0.0;
    for (size_t i = 0; i < batch.size(); ++i) {
      s_ww += batch.error_ww[i];
      s_wl += batch.error_wl[i];
    }
    const double lambda = e.diagnostics[0];
    ASSERT_GE(lambda, 0.0);
    ASSERT_LE(lambda, 1.0);
    const double slack = (s_ww - lambda * s_wl) - mu * s_ww;
    EXPECT_GE(slack, -1e-14 * s_ww) << "trial " << trial << ": the safeguard is violated";
    if (lambda < 1.0) {  // not the cap: the bound must be tight
      ++active;
      EXPECT_LE(std::fabs(slack), 1e-14 * s_ww) << "trial " << trial << ": lambda is not the largest admissible";
    }
  }
  EXPECT_GT(active, 50);
}

TEST(Sdpo, TheLosersGradientIsScaledEvenWhenErrorLlDiffersFromModelL) {
  // With error_ll != model_l (not what a host passes, but what the conformance kit's finite differences
  // produce) the loss is base(h~) at m_l~ = error_ll + lambda (m_l - error_ll), and its derivatives are
  // still exactly the returned gradients (checked by finite differences at a few points).
  pc::Batch batch = batch_with_correlation({0.9, 0.8, 0.7}, 9);
  for (double& e : batch.error_ll) e *= 1.1;
  const pc::Params params = {real("beta", 2.0)};
  const pc::Evaluation e0 = run("sdpo", params, batch);
  const double step = std::ldexp(1.0, -20);
  for (size_t i = 0; i < batch.size(); ++i) {
    pc::Batch plus = batch, minus = batch;
    plus.model_l[i] += step;
    minus.model_l[i] -= step;
    const double fd = (run("sdpo", params, plus).loss[i] - run("sdpo", params, minus).loss[i]) / (2 * step);
    EXPECT_LE(relative_error(fd, e0.dloss_dmodel_l[i]), 1e-8) << i;
  }
}

}  // namespace
}  // namespace prefdiff_test
