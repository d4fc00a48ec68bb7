// Closed forms of spec section 2/6, and cDPO/rDPO at eps = 0 being DPO to the last bit; the optima and
// limits of ipo, dmpo and mapo.
#include <cstring>
#include <random>

#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

TEST(ClosedForms, CdpoOptimumIsLog9AtEps01) {
  const double h_star = std::log(9.0);
  const AtMargins at = evaluate("cdpo", {real("eps", 0.1)}, {h_star - 1e-3, h_star, h_star + 1e-3});
  EXPECT_LE(std::fabs(at.dloss_dh[1]), 1e-15);  // sigma(ln 9) - 0.9 = 0 up to the rounding of eps and ln 9
  EXPECT_LT(at.dloss_dh[0], 0.0);
  EXPECT_GT(at.dloss_dh[2], 0.0);
  EXPECT_LT(at.loss[1], at.loss[0]);
  EXPECT_LT(at.loss[1], at.loss[2]);
}

TEST(ClosedForms, HolderGamma2PeakGradientIsThreeEighthsAtZero) {
  const AtMargins at = evaluate("holder_dpo", {real("gamma", 2.0)}, {-1e-3, 0.0, 1e-3});
  EXPECT_EQ(at.dloss_dh[1], -0.375);
  EXPECT_LT(std::fabs(at.dloss_dh[0]), 0.375);
  EXPECT_LT(std::fabs(at.dloss_dh[2]), 0.375);
  // In general the peak is at u = g/(g+2), i.e. h = log(g/2): check gamma = 1 (h = -log 2) too.
  const double peak = std::log(0.5);
  const AtMargins one = evaluate("holder_dpo", {real("gamma", 1.0)}, {peak - 1e-3, peak, peak + 1e-3});
  EXPECT_GT(std::fabs(one.dloss_dh[1]), std::fabs(one.dloss_dh[0]));
  EXPECT_GT(std::fabs(one.dloss_dh[1]), std::fabs(one.dloss_dh[2]));
}

TEST(ClosedForms, HolderLossIsInMinusOneZeroAndRedescends) {
  const AtMargins at = evaluate("holder_dpo", {}, {-1e4, -40.0, 0.0, 40.0, 1e4});
  for (double l : at.loss) {
    EXPECT_GE(l, -1.0);
    EXPECT_LE(l, 0.0);
  }
  EXPECT_EQ(at.dloss_dh[0], 0.0);  // gradient -> 0 as h -> -inf (redescending)
  EXPECT_EQ(at.loss[4], -1.0);
}

TEST(ClosedForms, AlphaDpoAtZeroWithHalfIsThreeMinusTwoRootTwo) {
  const AtMargins at = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 0.5)}, {0.0});
  EXPECT_LE(relative_error(at.loss[0], 3.0 - 2.0 * std::sqrt(2.0)), 1e-15);
}

TEST(ClosedForms, AlphaDpoTendsToOneOverAlphaAsHGoesToMinusInfinity) {
  // u^alpha = exp(alpha * h) must vanish for the limit to show, so alpha * |h| >> 1.
  for (double alpha : {0.01, 0.3, 0.5, 0.9, 0.9999}) {
    const AtMargins at = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", alpha)}, {-1e4, -40.0});
    EXPECT_LE(relative_error(at.loss[0], 1.0 / alpha), 1e-15) << "alpha=" << alpha;
    EXPECT_LT(at.loss[1], 1.0 / alpha);
  }
}

TEST(ClosedForms, BatchMeanAlphaReachesBothEndsWithTheExactLimits) {
  // All sigma(h) round to 1 with mu = 1: alpha = 1 exactly, loss u*log u + 1 - u ~ v^2/2.
  const AtMargins one = evaluate("alpha_dpo", {real("mu", 1.0)}, {1e4, 50.0});
  EXPECT_EQ(one.diagnostics[0], 1.0);
  EXPECT_EQ(one.loss[0], 0.0);
  const double v = std::exp(-50.0) / (1 + std::exp(-50.0));
  EXPECT_LE(relative_error(one.loss[1], 0.5 * v * v), 1e-14);
  EXPECT_LE(relative_error(one.dloss_dh[1], -v * v), 1e-14);
  // All sigma(h) underflow: alpha = 0 exactly, loss -log u + u - 1 = -h - 1 here, gradient -v^2 = -1.
  const AtMargins zero = evaluate("alpha_dpo", {}, {-1e4, -800.0});
  EXPECT_EQ(zero.diagnostics[0], 0.0);
  EXPECT_EQ(zero.loss[0], 9999.0);
  EXPECT_EQ(zero.loss[1], 799.0);
  EXPECT_EQ(zero.dloss_dh[0], -1.0);
}

TEST(ClosedForms, RdpoGradientTendsToMinusEpsOverOneMinusTwoEps) {
  for (double eps : {0.0, 0.1, 0.2, 0.45}) {
    const AtMargins at = evaluate("rdpo", {real("eps", eps)}, {60.0, 1e4});
    const double limit = -eps / (1.0 - 2.0 * eps);
    for (double g : at.dloss_dh) EXPECT_LE(std::fabs(g - limit), 1e-15 * std::max(1.0, std::fabs(limit))) << "eps=" << eps;
  }
  // Unbounded below for eps > 0, and not clamped.
  EXPECT_LE(relative_error(evaluate("rdpo", {real("eps", 0.2)}, {1e4}).loss[0], -0.2 * 1e4 / 0.6), 1e-15);
}

TEST(ClosedForms, CdpoAndRdpoAtEpsZeroAreDpoBitForBit) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mse(0.05, 0.5), offset(-4.0, 4.0);
  pc::Batch batch;
  for (int i = 0; i < 200; ++i) {
    const double rw = mse(rng), rl = mse(rng), ml = mse(rng);
    batch.ref_w.push_back(rw);
    batch.ref_l.push_back(rl);
    batch.model_l.push_back(ml);
    // spread of h from about -1e4 to 1e4 at beta = 5000
    batch.model_w.push_back(rw + (ml - rl) + offset(rng) * std::pow(10.0, (i % 8) - 4.0));
  }
  auto run = [&](const std::string& stem, pc::Params params) {
    const pc::PluginLibrary plugin = objective(stem);
    pc::ObjectiveInstance instance(plugin, resolve(plugin, params));
    pc::Evaluation e = instance.try_evaluate(batch);
    EXPECT_EQ(e.status, PD_OK) << e.message;
    return e;
  };
  const pc::Evaluation dpo = run("dpo", {});
  for (const char* stem : {"cdpo", "rdpo"}) {
    const pc::Evaluation other = run(stem, {real("eps", 0.0)});
    const size_t bytes = batch.size() * sizeof(double);
    EXPECT_EQ(std::memcmp(dpo.loss.data(), other.loss.data(), bytes), 0) << stem;
    EXPECT_EQ(std::memcmp(dpo.dloss_dmodel_w.data(), other.dloss_dmodel_w.data(), bytes), 0) << stem;
    EXPECT_EQ(std::memcmp(dpo.dloss_dmodel_l.data(), other.dloss_dmodel_l.data(), bytes), 0) << stem;
    EXPECT_EQ(std::memcmp(dpo.margin.data(), other.margin.data(), bytes), 0) << stem;
  }
}

TEST(ClosedForms, IpoIsMinimisedAtHalfWhateverBeta) {
  const AtMargins at = evaluate("ipo", {}, {0.0, 0.5, 3.0, -4.0});  // beta = 2
  EXPECT_EQ(at.loss[1], 0.0);
  EXPECT_EQ(at.dloss_dh[1], 0.0);
  EXPECT_EQ(at.loss[0], 0.0625);       // ((0 - 1/2)/2)^2
  EXPECT_EQ(at.dloss_dh[2], 1.25);     // 2 (3 - 1/2) / 2^2
  EXPECT_EQ(at.dloss_dh[3], -2.25);
  // At another beta the target margin stays 1/2 and the loss scales as 1/beta^2.
  const pc::PluginLibrary ipo = objective("ipo");
  pc::ObjectiveInstance instance(ipo, pc::resolve_params(ipo, {real("beta", 5000.0)}));
  const pc::Evaluation e = instance.try_evaluate(pc::Batch{{-1.0 / 5000.0}, {0.0}, {0.0}, {0.0}, {}, 0});  // h = 1/2
  ASSERT_EQ(e.status, PD_OK) << e.message;
  EXPECT_LE(std::fabs(e.margin[0] - 0.5), 1e-15);
  EXPECT_LE(e.loss[0], 1e-37);
}

TEST(ClosedForms, DmpoPullsToLogOddsOfOneMinusAlphaAndIsBoundedAtBothEnds) {
  for (double alpha : {1e-6, 0.01, 0.2, 0.45}) {
    const double k = std::log((1 - alpha) / alpha);  // ln 99 at 0.01
    const AtMargins at = evaluate("dmpo", {real("dmpo_alpha", alpha)}, {k - 1e-3, k, k + 1e-3, -1e4, 1e4});
    EXPECT_LE(at.loss[1], 1e-30) << alpha;
    EXPECT_LT(at.dloss_dh[0], 0.0);
    EXPECT_GT(at.dloss_dh[2], 0.0);
    EXPECT_GT(at.loss[0], at.loss[1]);
    EXPECT_GT(at.loss[2], at.loss[1]);
    // KL(Bernoulli(0) || Bernoulli(1 - alpha)) = -log(alpha); KL(Bernoulli(1) || ...) = -log(1 - alpha).
    EXPECT_LE(relative_error(at.loss[3], -std::log(alpha)), 1e-15) << alpha;
    EXPECT_LE(relative_error(at.loss[4], -std::log1p(-alpha)), 1e-15) << alpha;
    EXPECT_EQ(at.dloss_dh[3], 0.0);  // redescending at both ends
    EXPECT_EQ(at.dloss_dh[4], 0.0);
  }
}

TEST(ClosedForms, MapoAtEqualErrorsIsTheWinnersErrorPlusBetaLog2) {
  // m_w = m_l = 0: psi = 1 on both, z = 0, l = beta log 2, psi'(0) = -1/2:
  // dl/dm_w = 1 + beta T s / 4, dl/dm_l = -beta T s / 4 (beta 0.1, T 1000, s 0.5: 13.5 and -12.5).
  const pc::PluginLibrary mapo = objective("mapo");
  pc::ObjectiveInstance instance(mapo, pc::resolve_params(mapo, {}));
  const pc::Evaluation e = instance.try_evaluate(pc::Batch{{0.0, 0.4}, {0.0, 0.4}, {}, {}, {}, 0});
  ASSERT_EQ(e.status, PD_OK) << e.message;
  EXPECT_EQ(e.margin[0], 0.0);
  EXPECT_LE(relative_error(e.loss[0], 0.1 * std::log(2.0)), 1e-16);
  EXPECT_LE(relative_error(e.dloss_dmodel_w[0], 13.5), 1e-16);
  EXPECT_LE(relative_error(e.dloss_dmodel_l[0], -12.5), 1e-16);
  EXPECT_EQ(e.margin[1], 0.0);
  EXPECT_LE(relative_error(e.loss[1], 0.4 + 0.1 * std::log(2.0)), 1e-16);
  // Winner's gradient above 1 (the SFT term plus the margin term), loser's negative: equal errors still
  // push the two apart.
  EXPECT_GT(e.dloss_dmodel_w[1], 1.0);
  EXPECT_LT(e.dloss_dmodel_l[1], 0.0);
}

}  // namespace
}  // namespace prefdiff_test
