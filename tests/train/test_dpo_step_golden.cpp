// The DPO step reproduces the official Diffusion-DPO step (golden/dpo_step, produced by diffusers and
// DiffusionDPO's train.py loss) for DPO and for alpha-DPO with the released batch-mean alpha, within
// the tolerances that folder's README recommends for a float32 port. The number of pairs, shapes and the
// list of checked gradients come from the files (the reference sets differ in all of them).
#include "golden_step.hpp"

using namespace prefdiff;
using namespace golden_step;

TEST(DpoStepGolden, DpoForwardLossAccuracyAndGradientsMatchTheOfficialStep) {
  Golden g;
  ObjectiveSet dpo(nlohmann::json::array({{{"id", "dpo"}, {"beta", 5000.0}}}), g.registry);
  DpoStep step(*g.policy, *g.reference, g.schedule, dpo);
  zero_grads(*g.policy);
  const Tolerance tol = g.tol();
  DpoStepResult r;
  {
    prefdiff::testing::TargetAutocast autocast(g.step_autocast());
    r = step.train(g.batch, 1.0 / static_cast<double>(g.pairs), 0, static_cast<uint64_t>(g.pairs), /*keep_tensors=*/true);
  }

  expect_close_tensor(r.noisy_latents, g.expected("noisy_latents"), tol.noisy, "noisy_latents");
  expect_close_tensor(r.model_pred, g.expected("model_pred"), tol.pred, "model_pred");
  expect_close_tensor(r.ref_pred, g.expected("ref_pred"), tol.pred, "ref_pred");
  const auto mw = g.expected("model_mse_w"), ml = g.expected("model_mse_l");
  const auto rw = g.expected("ref_mse_w"), rl = g.expected("ref_mse_l"), h = g.expected("h");
  ASSERT_EQ(static_cast<int64_t>(r.errors.model_w.size()), g.pairs);
  ASSERT_EQ(h.numel(), g.pairs);
  for (int64_t i = 0; i < g.pairs; ++i) {
    expect_relative(r.errors.model_w[i], mw[i].item<double>(), tol.mse, "model_mse_w");
    expect_relative(r.errors.model_l[i], ml[i].item<double>(), tol.mse, "model_mse_l");
    expect_relative(r.errors.ref_w[i], rw[i].item<double>(), tol.mse, "ref_mse_w");
    expect_relative(r.errors.ref_l[i], rl[i].item<double>(), tol.mse, "ref_mse_l");
    const double h_tol = tol.h_abs;
    std::printf("  h[%lld] %.5g vs %.5g (|dh| %.3g, tolerance %.3g)\n", static_cast<long long>(i), r.objective.margin[i], h[i].item<double>(),
                std::fabs(r.objective.margin[i] - h[i].item<double>()), h_tol);
    EXPECT_LE(std::fabs(r.objective.margin[i] - h[i].item<double>()), h_tol) << "h[" << i << "]";
  }
  if (!g.target.bf16) {
    expect_relative(r.loss, g.expected("loss").item<double>(), tol.loss, "loss");
    // A fraction of the pairs (1/3 for three pairs): compared with a tolerance, the float32 reference is rounded.
    EXPECT_NEAR(r.implicit_accuracy, g.expected("implicit_acc").item<double>(), tol.acc) << "implicit accuracy";
  } else {  // |d(-log sigmoid(h))/dh| < 1: the loss moves by at most the |dh| bound
    const double loss_tol = tol.loss;
    std::printf("  loss %.5g vs %.5g (tolerance %.3g absolute)\n", r.loss, g.expected("loss").item<double>(), loss_tol);
    EXPECT_LE(std::fabs(r.loss - g.expected("loss").item<double>()), loss_tol);
  }
  check_gradients(g, "");
}

TEST(DpoStepGolden, AlphaDpoBatchMeanMatchesTheReleasedLoss) {
  Golden g;
  ObjectiveSet alpha(nlohmann::json::array({{{"id", "alpha-dpo"}, {"beta", 5000.0}, {"mu", 0.9999},
                                             {"alpha_mode", "batch-mean"}, {"start_step", -1}}}),
                     g.registry);
  DpoStep step(*g.policy, *g.reference, g.schedule, alpha);
  zero_grads(*g.policy);
  DpoStepResult r;
  {
    prefdiff::testing::TargetAutocast autocast(g.step_autocast());
    r = step.train(g.batch, 1.0 / static_cast<double>(g.pairs), 0, static_cast<uint64_t>(g.pairs));
  }
  const Tolerance tol = g.tol();
  if (!g.target.bf16) {
    expect_relative(r.objective.diagnostics.at("alpha"), g.expected("alpha_dpo.alpha").item<double>(), tol.loss, "alpha");
    expect_relative(r.loss, g.expected("alpha_dpo.loss").item<double>(), tol.loss, "alpha-DPO loss");
  } else {  // the loss is a function of h with slope below 1, bounded through |dh| as in the DPO test
    const double loss_tol = tol.loss;
    std::printf("  alpha-DPO loss %.5g vs %.5g (tolerance %.3g absolute)\n", r.loss,
                g.expected("alpha_dpo.loss").item<double>(), loss_tol);
    EXPECT_LE(std::fabs(r.loss - g.expected("alpha_dpo.loss").item<double>()), loss_tol);
  }
  check_gradients(g, "alpha_dpo.");
}

// A reference-free objective (MaPO declares PD_CAP_REFERENCE_FREE): the step runs without a reference model,
// passes no ref_w/ref_l, and the policy's MSEs are the golden step's. A reference-reading objective refuses
// a step without a reference.
TEST(DpoStepGolden, ReferenceFreeObjectiveRunsNoReference) {
  Golden g;
  ObjectiveSet mapo(nlohmann::json::array({{{"id", "mapo"}}}), g.registry);
  ASSERT_FALSE(mapo.needs_reference());
  ASSERT_FALSE(mapo.needs_error_inner_products());
  DpoStep step(*g.policy, nullptr, g.schedule, mapo);
  zero_grads(*g.policy);
  DpoStepResult r;
  {
    prefdiff::testing::TargetAutocast autocast(g.step_autocast());
    r = step.train(g.batch, 1.0 / static_cast<double>(g.pairs), 0, static_cast<uint64_t>(g.pairs), /*keep_tensors=*/true);
  }
  EXPECT_FALSE(r.ref_pred.defined()) << "a reference prediction was made";
  EXPECT_TRUE(r.errors.ref_w.empty() && r.errors.ref_l.empty()) << "reference MSEs passed to a reference-free objective";
  EXPECT_TRUE(r.errors.error_wl.empty()) << "inner products computed though no objective asked for them";
  const auto mw = g.expected("model_mse_w"), ml = g.expected("model_mse_l");
  ASSERT_EQ(static_cast<int64_t>(r.errors.model_w.size()), g.pairs);
  for (int64_t i = 0; i < g.pairs; ++i) {
    expect_relative(r.errors.model_w[i], mw[i].item<double>(), g.tol().mse, "model_mse_w");
    expect_relative(r.errors.model_l[i], ml[i].item<double>(), g.tol().mse, "model_mse_l");
  }
  EXPECT_TRUE(std::isfinite(r.loss));
  double squared = 0.0;
  for (const auto& [name, p] : g.policy->named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name << " has no gradient";
    squared += p.grad().to(torch::kFloat64).pow(2).sum().item<double>();
  }
  EXPECT_TRUE(std::isfinite(squared) && squared > 0.0) << "gradient norm^2 " << squared;

  ObjectiveSet dpo(nlohmann::json::array({{{"id", "dpo"}, {"beta", 5000.0}}}), g.registry);
  EXPECT_TRUE(dpo.needs_reference());
  EXPECT_THROW(DpoStep(*g.policy, nullptr, g.schedule, dpo), std::exception);
}
