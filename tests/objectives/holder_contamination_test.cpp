// Hölder-DPO's contamination estimate eps_hat = 1 - E[u^g]/E[u^(1+g) + v^(1+g)] (batch and running)
// and its exact state round trip.
#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

// The estimate computed here with pow(), independently of the plugin's log-domain code.
double direct_estimate(const std::vector<double>& h, double g) {
  double numerator = 0, denominator = 0;
  for (double x : h) {
    const double u = 1 / (1 + std::exp(-x)), v = 1 / (1 + std::exp(x));
    numerator += std::pow(u, g);
    denominator += std::pow(u, 1 + g) + std::pow(v, 1 + g);
  }
  return 1 - numerator / denominator;
}

TEST(HolderContamination, RecoversTheFlipRateOfAConfidentModel) {
  // 20% of pairs flipped: the model (trained on clean data) puts them at u ~ 0.
  std::vector<double> h;
  for (int i = 0; i < 100; ++i) h.push_back(i % 5 == 0 ? -30.0 - i * 0.01 : 30.0 + i * 0.01);
  const AtMargins at = evaluate("holder_dpo", {}, h);
  EXPECT_NEAR(at.diagnostics[0], 0.2, 1e-12);
  EXPECT_EQ(at.diagnostics[1], at.diagnostics[0]);  // first batch: running = batch
}

TEST(HolderContamination, ZeroForAnUninformativeModelAndMatchesTheDirectFormula) {
  EXPECT_NEAR(evaluate("holder_dpo", {}, {0.0, 0.0, 0.0}).diagnostics[0], 0.0, 1e-15);
  const std::vector<double> h = {-3, -1, -0.2, 0, 0.4, 1.5, 2, 6};
  for (double g : {0.5, 1.0, 2.0, 5.0}) {
    const AtMargins at = evaluate("holder_dpo", {real("gamma", g)}, h);
    EXPECT_NEAR(at.diagnostics[0], direct_estimate(h, g), 1e-14) << "gamma=" << g;
  }
}

TEST(HolderContamination, RunningEstimateCoversAllPairsAndSurvivesSaveLoad) {
  const pc::PluginLibrary plugin = objective("holder_dpo");
  const pc::ParamSet params = resolve(plugin, {real("beta", 2.0)});
  const std::vector<double> first = {-2, 1, 3, 0.5}, second = {4, -6, 2.5};
  pc::ObjectiveInstance a(plugin, params);
  ASSERT_EQ(a.try_evaluate(batch_at(first)).status, PD_OK);
  const std::string state = a.save_state();
  EXPECT_EQ(state.rfind("holder-dpo state v1\n", 0), 0u) << state;

  pc::ObjectiveInstance b(plugin, params);
  std::string message;
  ASSERT_EQ(b.try_load_state(state, &message), PD_OK) << message;
  const pc::Evaluation ea = a.try_evaluate(batch_at(second, 1)), eb = b.try_evaluate(batch_at(second, 1));
  EXPECT_EQ(ea.diagnostics, eb.diagnostics);
  std::vector<double> all = first;
  all.insert(all.end(), second.begin(), second.end());
  EXPECT_NEAR(ea.diagnostics[1], direct_estimate(all, 2.0), 1e-14);
  EXPECT_NEAR(ea.diagnostics[0], direct_estimate(second, 2.0), 1e-14);

  // A state from another gamma is refused: the running sums would mix two objectives.
  pc::ObjectiveInstance c(plugin, resolve(plugin, {real("gamma", 3.0)}));
  EXPECT_EQ(c.try_load_state(state, &message), PD_ERR_INVALID_ARGUMENT);
  EXPECT_NE(message.find("gamma"), std::string::npos) << message;
  EXPECT_EQ(c.try_load_state("holder-dpo state v1\ngamma=0x1p+1\nsum_u_gamma=oops\n", &message), PD_ERR_INVALID_ARGUMENT);
}

}  // namespace
}  // namespace prefdiff_test
