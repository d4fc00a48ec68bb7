// The DPO step reproduces the official Diffusion-DPO step (golden/dpo_step, produced by diffusers and
// DiffusionDPO's train.py loss) for DPO and for alpha-DPO with the released batch-mean alpha, within
// the tolerances that folder's README recommends for a float32 port.
#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/train/dpo_step.hpp"

using namespace prefdiff;
namespace fs = std::filesystem;

namespace {

fs::path golden_dir() {
  if (const char* env = std::getenv("PREFDIFF_GOLDEN_DIR"); env && *env) return env;
  return fs::path(PREFDIFF_SOURCE_DIR) / ".." / "shared" / "golden";
}

struct Golden {
  std::unique_ptr<Backbone> policy, reference;
  diffusion::NoiseSchedule schedule;
  PluginRegistry registry;
  DpoBatch batch;
  model_io::SafetensorsFile outputs = model_io::SafetensorsFile::open(golden_dir() / "dpo_step" / "outputs.safetensors");

  Golden() {
    const fs::path sd15 = golden_dir() / "unet_sd15_tiny";
    policy = BackboneRegistry::instance().load("unet2d", sd15);
    reference = BackboneRegistry::instance().load("unet2d", sd15);
    // ref.safetensors is an overlay: the reference is the policy with these tensors replaced.
    const auto overlay = model_io::SafetensorsFile::open(golden_dir() / "dpo_step" / "ref.safetensors");
    torch::NoGradGuard no_grad;
    size_t replaced = 0;
    for (auto& [name, parameter] : reference->named_parameters())
      if (overlay.contains(name)) {
        parameter.copy_(overlay.load(name));
        ++replaced;
      }
    EXPECT_EQ(replaced, overlay.names().size()) << "every overlay tensor names a reference parameter";
    policy->train(false);  // as the golden run: eval mode, no dropout anyway
    reference->train(false);
    reference->set_requires_grad(false);
    const auto inputs = model_io::SafetensorsFile::open(golden_dir() / "dpo_step" / "inputs.safetensors");
    batch.latents_w = inputs.load("latents_w");
    batch.latents_l = inputs.load("latents_l");
    batch.noise = inputs.load("noise");
    batch.encoder_hidden_states = inputs.load("encoder_hidden_states");
    batch.timesteps = inputs.load("timesteps");
    registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  }

  at::Tensor expected(const std::string& name) const { return outputs.load(name); }
};

// max |a - b| <= rel * max |b|, per tensor (the README's rule for parameter gradients).
void expect_close_tensor(const at::Tensor& actual, const at::Tensor& expected, double rel, const std::string& name) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << name;
  const double error = (actual.to(torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  const double scale = expected.to(torch::kFloat64).abs().max().item<double>();
  EXPECT_LE(error, rel * scale) << name << ": max abs error " << error << ", max |expected| " << scale;
}

void expect_relative(double actual, double expected, double rel, const std::string& name) {
  EXPECT_LE(std::fabs(actual - expected), rel * std::fabs(expected)) << name << ": " << actual << " vs " << expected;
}

void check_gradients(Golden& g, const std::string& prefix) {
  int checked = 0;
  for (const std::string& name : g.outputs.names()) {
    if (name.rfind(prefix + "param_grad.", 0) != 0) continue;
    const std::string parameter = name.substr(prefix.size() + std::string("param_grad.").size());
    for (const auto& [pname, p] : g.policy->named_parameters())
      if (pname == parameter) {
        ASSERT_TRUE(p.grad().defined()) << parameter << " has no gradient";
        expect_close_tensor(p.grad(), g.expected(name), 2e-3, name);
        ++checked;
      }
  }
  EXPECT_EQ(checked, 14) << "every gradient listed in the golden README is checked";
}

void zero_grads(Backbone& model) {
  for (auto& [name, p] : model.named_parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

}  // namespace

TEST(DpoStepGolden, DpoForwardLossAccuracyAndGradientsMatchTheOfficialStep) {
  Golden g;
  ObjectiveSet dpo(nlohmann::json::array({{{"id", "dpo"}, {"beta", 5000.0}}}), g.registry);
  DpoStep step(*g.policy, *g.reference, g.schedule, dpo);
  zero_grads(*g.policy);
  const DpoStepResult r = step.train(g.batch, 1.0 / 2.0, 0, 2, /*keep_tensors=*/true);

  expect_close_tensor(r.noisy_latents, g.expected("noisy_latents"), 1e-6, "noisy_latents");
  expect_close_tensor(r.model_pred, g.expected("model_pred"), 1e-5, "model_pred");
  expect_close_tensor(r.ref_pred, g.expected("ref_pred"), 1e-5, "ref_pred");
  const auto mw = g.expected("model_mse_w"), ml = g.expected("model_mse_l");
  const auto rw = g.expected("ref_mse_w"), rl = g.expected("ref_mse_l"), h = g.expected("h");
  for (int i = 0; i < 2; ++i) {
    expect_relative(r.errors.model_w[i], mw[i].item<double>(), 1e-5, "model_mse_w");
    expect_relative(r.errors.model_l[i], ml[i].item<double>(), 1e-5, "model_mse_l");
    expect_relative(r.errors.ref_w[i], rw[i].item<double>(), 1e-5, "ref_mse_w");
    expect_relative(r.errors.ref_l[i], rl[i].item<double>(), 1e-5, "ref_mse_l");
    EXPECT_LE(std::fabs(r.objective.margin[i] - h[i].item<double>()), 5e-3) << "h[" << i << "]";
  }
  expect_relative(r.loss, g.expected("loss").item<double>(), 1e-3, "loss");
  EXPECT_EQ(r.implicit_accuracy, g.expected("implicit_acc").item<double>());
  check_gradients(g, "");
}

TEST(DpoStepGolden, AlphaDpoBatchMeanMatchesTheReleasedLoss) {
  Golden g;
  ObjectiveSet alpha(nlohmann::json::array({{{"id", "alpha-dpo"}, {"beta", 5000.0}, {"mu", 0.9999},
                                             {"alpha_mode", "batch-mean"}, {"start_step", -1}}}),
                     g.registry);
  DpoStep step(*g.policy, *g.reference, g.schedule, alpha);
  zero_grads(*g.policy);
  const DpoStepResult r = step.train(g.batch, 1.0 / 2.0, 0, 2);
  expect_relative(r.objective.diagnostics.at("alpha"), g.expected("alpha_dpo.alpha").item<double>(), 1e-3, "alpha");
  expect_relative(r.loss, g.expected("alpha_dpo.loss").item<double>(), 1e-3, "alpha-DPO loss");
  check_gradients(g, "alpha_dpo.");
}
