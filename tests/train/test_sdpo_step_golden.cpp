// The host's SDPO step (error inner products computed by the step, the sdpo plugin's per-pair gradients
// through the surrogate backward) against PyTorch autograd of the published Diffusion-SDPO rule on the
// golden tiny UNet: tests/objectives/sdpo_reference.py (ctest fixture objectives_sdpo_reference) writes
// sdpo_step.safetensors from the generated main golden set. Every count (pairs, parameters) comes from the
// files; each tolerance is kMargin times the float32-vs-float64 error the reference measured for that
// quantity (its metadata), taken at least as large as the worst of its group (per-pair errors and Gram
// entries; parameter gradients) so that a tensor whose float32 run happened to round well is not held tighter.
#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "golden_step.hpp"

using namespace prefdiff;
using namespace golden_step;

namespace {

constexpr double kMargin = 10.0;  // over the reference's own float32 error: another float32 UNet, other sums

struct SdpoReference {
  model_io::SafetensorsFile file = model_io::SafetensorsFile::open(fs::path(PREFDIFF_SDPO_REFERENCE_DIR) / "sdpo_step.safetensors");
  std::map<std::string, double> measured;  // key -> max|f32 - f64| / max|f64| of the reference's float32 run
  double worst_gram = 0.0, worst_grad = 0.0;

  SdpoReference() {
    const nlohmann::json errors = nlohmann::json::parse(metadata("f32_vs_f64_max_abs_and_max_ref"));
    for (const auto& [key, pair] : errors.items()) {
      const double scale = pair.at(1).get<double>();
      const double rel = scale > 0.0 ? pair.at(0).get<double>() / scale : 0.0;
      measured[key] = rel;
      if (key.rfind("param_grad.", 0) == 0) worst_grad = std::max(worst_grad, rel);
      if (key.rfind("model_mse_", 0) == 0 || key.rfind("error_", 0) == 0) worst_gram = std::max(worst_gram, rel);
    }
  }
  std::string metadata(const std::string& key) const {
    const auto& m = file.header().metadata;
    const auto it = m.find(key);
    if (it == m.end()) throw std::runtime_error(file.path().string() + " has no metadata '" + key + "'");
    return it->second;
  }
  double number(const std::string& key) const { return std::stod(metadata(key)); }
  at::Tensor load(const std::string& key) const { return file.load(key, torch::kFloat64); }
  double tolerance(const std::string& key) const {
    const double group = key.rfind("param_grad.", 0) == 0 ? worst_grad
                         : (key.rfind("model_mse_", 0) == 0 || key.rfind("error_", 0) == 0) ? worst_gram
                                                                                            : 0.0;
    return kMargin * std::max(measured.at(key), group);
  }
};

// max|a - b| / max|b| over one quantity, checked against the reference's tolerance for it; returns the
// ratio of the error to the tolerance (the test prints the worst).
double check(const SdpoReference& ref, const std::string& key, const at::Tensor& actual) {
  const at::Tensor expected = ref.load(key);
  EXPECT_EQ(actual.numel(), expected.numel()) << key;
  if (actual.numel() != expected.numel()) return 0.0;
  const at::Tensor a = actual.to(torch::kCPU, torch::kFloat64).reshape(expected.sizes());
  const double error = (a - expected).abs().max().item<double>();
  const double scale = expected.abs().max().item<double>();
  const double tol = ref.tolerance(key);
  std::printf("  %-70s rel %.3g, tolerance %.3g (ratio %.3f)\n", key.c_str(), error / scale, tol, error / scale / tol);
  EXPECT_LE(error, tol * scale) << key << ": max abs error " << error << ", max |expected| " << scale;
  return error / scale / tol;
}

at::Tensor tensor(const std::vector<double>& values) { return torch::tensor(values, torch::kFloat64); }

}  // namespace

TEST(SdpoStepGolden, InnerProductsLambdaAndGradientsMatchAutogradOfThePublishedRule) {
  Golden g;
  if (g.target.bf16) GTEST_SKIP() << "the SDPO reference's tolerances are float32 ones";
  const SdpoReference ref;
  ASSERT_EQ(std::stoll(ref.metadata("pairs")), g.pairs) << "the reference was made from another golden set";
  ObjectiveSet sdpo(nlohmann::json::array({{{"id", "sdpo"},
                                            {"beta", ref.number("beta")},
                                            {"winner_preserving_mu", ref.number("mu")},
                                            {"lambda_eps", ref.number("lambda_eps")}}}),
                    g.registry);
  ASSERT_TRUE(sdpo.needs_error_inner_products());
  ASSERT_TRUE(sdpo.needs_reference());
  DpoStep step(*g.policy, *g.reference, g.schedule, sdpo);
  zero_grads(*g.policy);
  const DpoStepResult r = step.train(g.batch, 1.0 / static_cast<double>(g.pairs), 0, static_cast<uint64_t>(g.pairs));

  ASSERT_EQ(r.errors.error_wl.size(), r.errors.model_w.size()) << "the step passed no inner products";
  const double lambda = r.objective.diagnostics.at("lambda");
  const double lambda_ref = ref.load("lambda").item<double>();
  ASSERT_GT(lambda_ref, 0.0);
  ASSERT_LT(lambda_ref, 1.0) << "the safeguard must be active on the reference step for this test to mean anything";
  double worst = 0.0;
  worst = std::max(worst, check(ref, "model_mse_w", tensor(r.errors.model_w)));
  worst = std::max(worst, check(ref, "model_mse_l", tensor(r.errors.model_l)));
  worst = std::max(worst, check(ref, "error_ww", tensor(r.errors.error_ww)));
  worst = std::max(worst, check(ref, "error_wl", tensor(r.errors.error_wl)));
  worst = std::max(worst, check(ref, "error_ll", tensor(r.errors.error_ll)));
  worst = std::max(worst, check(ref, "lambda", torch::tensor({lambda}, torch::kFloat64)));
  worst = std::max(worst, check(ref, "h", tensor(r.objective.margin)));
  worst = std::max(worst, check(ref, "dloss_dmodel_w", tensor(r.objective.dloss_dmodel_w)));
  worst = std::max(worst, check(ref, "dloss_dmodel_l", tensor(r.objective.dloss_dmodel_l)));
  worst = std::max(worst, check(ref, "loss", torch::tensor({r.loss}, torch::kFloat64)));

  int listed = 0, checked = 0;
  for (const std::string& name : ref.file.names()) {
    if (name.rfind("param_grad.", 0) != 0) continue;  // the float64 run's; "f32.param_grad.*" are its float32 twin
    ++listed;
    const std::string parameter = name.substr(std::string("param_grad.").size());
    for (const auto& [pname, p] : g.policy->named_parameters())
      if (pname == parameter) {
        ASSERT_TRUE(p.grad().defined()) << parameter << " has no gradient";
        worst = std::max(worst, check(ref, name, p.grad()));
        ++checked;
      }
  }
  EXPECT_GT(listed, 0) << "the reference lists no param_grad.* tensor";
  EXPECT_EQ(checked, listed) << "every gradient the reference lists names a policy parameter and is checked";
  std::printf("SDPO step vs PyTorch autograd (lambda %.6g vs %.6g, %d gradients): worst error/tolerance %.3f\n", lambda,
              lambda_ref, checked, worst);
  RecordProperty("worst_error_over_tolerance", std::to_string(worst));
}
