// sdpo against a PyTorch autograd computation of the published rule (AIDC-AI/Diffusion-SDPO train.py) on
// one Diffusion-DPO step of the golden tiny UNet: sdpo_reference.py, run by ctest as a fixture, writes the
// float64 per-pair inputs (MSEs and error Gram entries as the host computes them) and the autograd
// derivatives of the batch loss with respect to each pair's MSEs.
#include <nlohmann/json.hpp>

#include <fstream>

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

TEST(Sdpo, MatchesAutogradOfThePublishedRuleOnTheGoldenTinyUnet) {
  std::ifstream in(PREFDIFF_SDPO_REFERENCE_JSON);
  ASSERT_TRUE(in) << PREFDIFF_SDPO_REFERENCE_JSON << " missing: run ctest (objectives.sdpo_reference_generate)";
  const nlohmann::json ref = nlohmann::json::parse(in);
  pc::Batch batch;
  const std::pair<const char*, std::vector<double> pc::Batch::*> fields[] = {
      {"model_w", &pc::Batch::model_w},   {"model_l", &pc::Batch::model_l},   {"ref_w", &pc::Batch::ref_w},
      {"ref_l", &pc::Batch::ref_l},       {"error_ww", &pc::Batch::error_ww}, {"error_wl", &pc::Batch::error_wl},
      {"error_ll", &pc::Batch::error_ll}};
  for (const auto& [key, field] : fields) batch.*field = ref.at(key).get<std::vector<double>>();
  const pc::Evaluation e =
      run("sdpo", {real("beta", ref.at("beta").get<double>()), real("winner_preserving_mu", ref.at("mu").get<double>()),
                   real("lambda_eps", ref.at("lambda_eps").get<double>())},
          batch);
  const double lambda = ref.at("lambda").get<double>();
  ASSERT_GT(lambda, 0.0);
  ASSERT_LT(lambda, 1.0);  // the safeguard is active on this step
  // h carries the float64 rounding of (m_w - r_w) - (m_l - r_l) in another association order, times
  // beta/2 = 2500: ~1e-13 relative; everything downstream inherits it.
  constexpr double kTolerance = 1e-11;
  double worst = relative_error(e.diagnostics[0], lambda);
  EXPECT_LE(worst, 1e-14) << "lambda " << e.diagnostics[0] << " vs autograd " << lambda;
  double mean_loss = 0.0;
  for (size_t i = 0; i < batch.size(); ++i) {
    mean_loss += e.loss[i] / static_cast<double>(batch.size());
    const double errors[] = {relative_error(e.margin[i], ref.at("h")[i].get<double>()),
                             relative_error(e.dloss_dmodel_w[i], ref.at("dloss_dmodel_w")[i].get<double>()),
                             relative_error(e.dloss_dmodel_l[i], ref.at("dloss_dmodel_l")[i].get<double>())};
    for (double err : errors) {
      EXPECT_LE(err, kTolerance) << "pair " << i;
      worst = std::max(worst, err);
    }
  }
  EXPECT_LE(relative_error(mean_loss, ref.at("loss").get<double>()), kTolerance);
  worst = std::max(worst, relative_error(mean_loss, ref.at("loss").get<double>()));
  std::printf("sdpo vs PyTorch autograd of the released rule (golden tiny UNet, lambda = %.6g): worst relative "
              "error %.3g\n", lambda, worst);
  RecordProperty("worst_relative_error", std::to_string(worst));
}

}  // namespace
}  // namespace prefdiff_test
