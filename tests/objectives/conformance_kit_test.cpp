// The conformance kit passes on the first-party objectives (defaults and edge parameters) and FAILS on
// deliberately broken ones, naming the check that caught each defect.
#include <cstdlib>

#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

bool check_failed(const pc::Report& report, const std::string& name) {
  for (const pc::CheckResult& c : report.checks)
    if (c.name == name) return !c.passed;
  return false;
}

void expect_passes(const std::string& stem, const pc::Params& params) {
  const pc::Report report = pc::check_objective(objective(stem), params);
  EXPECT_TRUE(report.passed()) << report.text();
  EXPECT_GE(report.checks.size(), 9u);
}

TEST(ConformanceKit, PassesOnEveryObjectiveWithDefaults) {
  for (const char* stem : {"dpo", "cdpo", "rdpo", "holder_dpo", "alpha_dpo", "ipo", "mapo", "dmpo", "sdpo"})
    expect_passes(stem, {});
}

TEST(ConformanceKit, PassesAtEdgeParameters) {
  expect_passes("cdpo", {real("eps", 0.0)});
  expect_passes("cdpo", {real("eps", 0.49)});
  expect_passes("rdpo", {real("eps", 0.49)});
  expect_passes("holder_dpo", {real("gamma", 0.05)});
  expect_passes("holder_dpo", {real("gamma", 20.0)});
  expect_passes("dpo", {real("beta", 2500.0)});
  for (double a : {1e-12, 0.3, 0.5, 0.9999, 1 - 1e-12})
    expect_passes("alpha_dpo", {text("alpha_mode", "fixed"), real("alpha", a)});
  expect_passes("alpha_dpo", {real("mu", 1.0)});
  expect_passes("alpha_dpo", {integer("start_step", 5)});
  expect_passes("ipo", {real("beta", 2.0)});
  for (double a : {1e-6, 0.3, 0.4999999}) expect_passes("dmpo", {real("dmpo_alpha", a)});
  expect_passes("dmpo", {real("beta", 2000.0)});
  expect_passes("mapo", {real("snr_value", 1e-3)});
  expect_passes("mapo", {real("snr_value", 4.0), integer("num_train_timesteps", 1), real("beta_mapo", 10.0)});
  expect_passes("mapo", {real("beta_mapo", 1e-4)});
  for (double mu : {0.0, 0.6, 1.0}) expect_passes("sdpo", {real("winner_preserving_mu", mu)});
  expect_passes("sdpo", {text("base_objective", "dmpo"), real("dmpo_alpha", 0.3)});
  expect_passes("sdpo", {real("lambda_eps", 1.0)});
}

TEST(ConformanceKit, ChecksWhatTheOptionalInputCapabilitiesPromise) {
  // With the kit's aligned inner products (correlations 0.1-0.9) and the default mu = 0.9 the safeguard
  // is active in the gradient check (lambda ~ 0.2); broken_naive_safeguard shows that a scaled gradient
  // that is not the derivative of the reported loss fails there.
  const pc::Report sdpo = pc::check_objective(objective("sdpo"), {});
  EXPECT_NE(sdpo.text().find("reads error inner products, a batch without them refused"), std::string::npos)
      << sdpo.text();
  const pc::Report mapo = pc::check_objective(objective("mapo"), {});
  EXPECT_NE(mapo.text().find("reference-free: the same outputs with other references and with none"),
            std::string::npos)
      << mapo.text();
}

TEST(ConformanceKit, FailsOnBrokenObjectives) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"wrong_sign", "gradient vs finite differences"},
      {"chain_rule", "gradient vs finite differences"},
      {"order", "batch size and order independence"},
      {"hidden_state", "determinism"},
      {"unstable", "finite outputs at extreme inputs"},
      {"bad_default", "schema defaults"},
      {"state", "state round trip"},
      {"nan_passthrough", "non-finite inputs"},
      {"claims_reference_free", "optional inputs"},
      {"naive_safeguard", "gradient vs finite differences"},
  };
  for (const auto& c : cases) {
    const pc::Report report = pc::check_objective(broken(c.first));
    EXPECT_FALSE(report.passed()) << c.first << "\n" << report.text();
    EXPECT_TRUE(check_failed(report, c.second)) << c.first << " should fail '" << c.second << "'\n" << report.text();
    EXPECT_NE(report.text().find("FAILED"), std::string::npos);
  }
}

TEST(ConformanceKit, LoaderErrorsNameThePathAndTheProblem) {
  try {
    prefdiff::instance::load_library("/nonexistent/libnothing.so", prefdiff::instance::default_host_services());
    FAIL();
  } catch (const prefdiff::instance::PluginLoadError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/libnothing.so"), std::string::npos);
  }
  // A shared library that is not a plugin: the kit's own test binary has no entry point... use libm.
  try {
    prefdiff::instance::load_library("libm.so.6", prefdiff::instance::default_host_services());
    FAIL();
  } catch (const prefdiff::instance::PluginLoadError& e) {
    EXPECT_EQ(e.status(), PD_ERR_ABI_MISMATCH);
    EXPECT_NE(std::string(e.what()).find("prefdiff_plugin_entry"), std::string::npos);
  }
}

// Reads the numbers of `"key": [a, b, ...]` from the kit's JSON.
std::vector<double> json_array(const std::string& json, const std::string& key) {
  std::vector<double> out;
  size_t at = json.find("\"" + key + "\": [");
  if (at == std::string::npos) return out;
  const char* p = json.c_str() + json.find('[', at) + 1;
  while (*p != ']') {
    char* end = nullptr;
    out.push_back(std::strtod(p, &end));
    p = end;
    while (*p == ',' || *p == ' ') ++p;
  }
  return out;
}

TEST(ConformanceKit, MarginsJsonMatchesTheSpecBatchMeanVector) {
  const std::vector<double> h = {-5, -1, 0, 0.5, 3};
  const std::string json = pc::evaluate_margins_json(objective("alpha_dpo"), pc::Params{}, h);
  EXPECT_NE(json.find("\"alpha_mode\": \"batch-mean\""), std::string::npos) << json;
  const std::vector<double> got_h = json_array(json, "h"), loss = json_array(json, "loss"),
                            dldh = json_array(json, "dloss_dh");
  ASSERT_EQ(got_h.size(), 5u);
  ASSERT_EQ(dldh.size(), 5u);
  const std::vector<double> expected = {-0.16558060209757, -0.373083243048645, -0.209393900505716,
                                        -0.126653359549792, -0.00222351595236858};
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_LE(relative_error(got_h[i], h[i]), 2e-16);  // 3 is not reachable at beta = 5000: 1 ulp away
    EXPECT_LE(relative_error(dldh[i], expected[i]), 1e-12);
  }
  double mean = 0;
  for (double l : loss) mean += l / 5;
  EXPECT_LE(relative_error(mean, 0.498274993470703), 1e-12);
  const size_t alpha = json.find("\"alpha\": ");
  ASSERT_NE(alpha, std::string::npos);
  EXPECT_LE(relative_error(std::strtod(json.c_str() + alpha + 9, nullptr), 0.470086532709107), 1e-12);
}

TEST(ConformanceKit, MarginsJsonIsExactAtBetaTwo) {
  const std::vector<double> h = {-5, -1, 0, 0.5, 3, 0.1234567890123};
  const std::string json = pc::evaluate_margins_json(objective("dpo"), {real("beta", 2.0)}, h);
  EXPECT_NE(json.find("\"h_exact\": true"), std::string::npos) << json;
  EXPECT_EQ(json_array(json, "h"), h);
  // The JSON's dl/dh is the plugin's own to the last bit (at beta = 2 the chain rule is exact).
  EXPECT_EQ(json_array(json, "dloss_dh"), evaluate("dpo", {}, h).dloss_dh);
  EXPECT_EQ(json_array(json, "loss"), evaluate("dpo", {}, h).loss);
}

}  // namespace
}  // namespace prefdiff_test
