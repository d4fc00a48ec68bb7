// Every test vector of docs/objectives.md ("Test vectors", 150-digit references), to 1e-12 relative, loss and dl/dh.
#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

const std::vector<double> kH = {-5.0, -1.0, 0.0, 0.5, 3.0};
constexpr double kTolerance = 1e-12;

struct Row {
  const char* name;
  const char* plugin;
  pc::Params params;
  std::vector<double> loss, dloss_dh;
};

std::vector<Row> rows() {
  return {
      {"DPO", "dpo", {},
       {5.00671534848912, 1.31326168751822, 0.693147180559945, 0.474076984180107, 0.0485873515737421},
       {-0.993307149075715, -0.731058578630005, -0.5, -0.377540668798145, -0.0474258731775668}},
      {"cDPO eps=0.1", "cdpo", {real("eps", 0.1)},
       {4.50671534848912, 1.21326168751822, 0.693147180559945, 0.524076984180107, 0.348587351573742},
       {-0.893307149075715, -0.631058578630005, -0.4, -0.277540668798145, 0.0525741268224332}},
      {"rDPO eps=0.2", "rdpo", {real("eps", 0.2)},
       {6.67338201515578, 1.64659502085156, 0.693147180559945, 0.30741031751344, -0.951412648426258},
       {-1.32664048240905, -1.06439191196334, -0.833333333333333, -0.710874002131479, -0.3807592065109}},
      {"Hölder gamma=2", "holder_dpo", {real("gamma", 2.0)},
       {-0.000133783157962293, -0.178083673697047, -0.5, -0.680016126054175, -0.993465701483377},
       {-0.000265179944988225, -0.231937513757718, -0.375, -0.331360468491179, -0.0122455835066557}},
      {"alpha-DPO alpha=0.5", "alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 0.5)},
       {1.68614631731707, 0.463500346207607, 0.17157287525381, 0.0890749876901353, 0.00115209212537392},
       {-0.14922849671556, -0.365023693241999, -0.207106781186548, -0.125722241383691, -0.00222189395914122}},
      {"alpha-DPO alpha=0.9999", "alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 0.9999)},
       {0.959885548231467, 0.37788270943849, 0.153429741091263, 0.0824482761490764, 0.00114282102096403},
       {-0.0332932611698816, -0.25821987437721, -0.173292800941423, -0.111412492035706, -0.00219501958177823}},
  };
}

TEST(SpecVectors, LossAndGradientPerPlugin) {
  double worst = 0.0;
  for (const Row& row : rows()) {
    const AtMargins got = evaluate(row.plugin, row.params, kH);
    for (size_t i = 0; i < kH.size(); ++i) {
      EXPECT_LE(relative_error(got.loss[i], row.loss[i]), kTolerance) << row.name << " loss at h=" << kH[i];
      EXPECT_LE(relative_error(got.dloss_dh[i], row.dloss_dh[i]), kTolerance) << row.name << " dl/dh at h=" << kH[i];
      worst = std::max({worst, relative_error(got.loss[i], row.loss[i]), relative_error(got.dloss_dh[i], row.dloss_dh[i])});
    }
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
  std::printf("spec section 6 fixed-parameter rows: worst relative error %.3g\n", worst);
}

TEST(SpecVectors, BatchMeanAlpha) {
  const AtMargins got = evaluate("alpha_dpo", {real("mu", 0.9999)}, kH);
  const double alpha = 0.470086532709107, batch_loss = 0.498274993470703;
  const std::vector<double> dloss_dh = {-0.16558060209757, -0.373083243048645, -0.209393900505716,
                                        -0.126653359549792, -0.00222351595236858};
  ASSERT_EQ(got.diagnostics.size(), 1u);
  EXPECT_LE(relative_error(got.diagnostics[0], alpha), kTolerance);
  double mean = 0.0;
  for (double l : got.loss) mean += l / 5.0;
  EXPECT_LE(relative_error(mean, batch_loss), kTolerance);
  for (size_t i = 0; i < kH.size(); ++i)
    EXPECT_LE(relative_error(got.dloss_dh[i], dloss_dh[i]), kTolerance) << "h=" << kH[i];
  // mean u = 0.470133546063714 and alpha = mu * mean u.
  EXPECT_LE(relative_error(got.diagnostics[0] / 0.9999, 0.470133546063714), kTolerance);
}

TEST(SpecVectors, AlphaLimitRows) {
  // alpha = 1e-12 and 1 - 1e-12 sit within ~1e-12 of the alpha -> 0 and alpha -> 1 limit rows.
  const std::vector<double> to_zero = {4.0134081994134, 0.582203108888218, 0.193147180559945, 0.0965363153819612,
                                       0.00116147839617528};
  const std::vector<double> to_one = {0.959797949627949, 0.377868113758096, 0.153426409720027, 0.082447026287204,
                                      0.00114281917759486};
  const AtMargins small = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 1e-12)}, kH);
  const AtMargins large = evaluate("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", 1.0 - 1e-12)}, kH);
  double worst = 0.0;
  for (size_t i = 0; i < kH.size(); ++i) {
    EXPECT_LE(relative_error(small.loss[i], to_zero[i]), 1e-11) << "h=" << kH[i];
    EXPECT_LE(relative_error(large.loss[i], to_one[i]), 1e-11) << "h=" << kH[i];
    worst = std::max({worst, relative_error(small.loss[i], to_zero[i]), relative_error(large.loss[i], to_one[i])});
  }
  std::printf("alpha=1e-12 / 1-1e-12 vs the limit rows: worst relative difference %.3g\n", worst);
}

}  // namespace
}  // namespace prefdiff_test
