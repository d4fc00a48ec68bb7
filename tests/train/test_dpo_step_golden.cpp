// The DPO step reproduces the official Diffusion-DPO step (golden/dpo_step, produced by diffusers and
// DiffusionDPO's train.py loss) for DPO and for alpha-DPO with the released batch-mean alpha, within
// the tolerances that folder's README recommends for a float32 port. The number of pairs, shapes and the
// list of checked gradients come from the files (the reference sets differ in all of them).
#include <filesystem>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/golden_path.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/train/dpo_step.hpp"
#include "../backbones/test_target.hpp"  // PREFDIFF_TEST_DEVICE / PREFDIFF_TEST_DTYPE (default: CPU float32)

using namespace prefdiff;
namespace fs = std::filesystem;

using prefdiff::testing::golden_dir;

namespace {

// The README's float32 tolerances, and the bfloat16-autocast ones (measured under CPU autocast, ~3x margin;
// docs/performance.md, "GPU path (H100)"). With beta = 5000 the margin h = -beta/2 * (model_w - model_l -
// ref_w + ref_l) multiplies the per-image MSE error (~3e-4 relative in bf16) by 2500, so h moves by ~1, the
// loss by at most as much (|dloss/dh| < 1), and the gradients, weighted per pair by sigmoid(-h) and made of
// nearly cancelling winner/loser terms, by tens of percent: under bf16 those three checks catch gross
// errors only; the float32 run is the precise one.
struct Tolerance {
  double noisy = 1e-6, pred = 1e-5, mse = 1e-5, h_abs = 5e-3, loss = 1e-3, grad = 2e-3, acc = 1e-6;
};
Tolerance tolerance(const prefdiff::testing::TestTarget& t) {
  if (!t.bf16) return {};
  // noisy_latents are computed in float32 outside autocast; pred max-norm relative (measured 1.2e-2);
  // MSE relative (3.3e-4); |dh| absolute (0.94), also the loss bound; gradients max-norm relative (0.24).
  return {1e-6, 6e-2, 1e-3, 3.0, 3.0, 0.7, 1e-6};
}

struct Golden {
  prefdiff::testing::TestTarget target = prefdiff::testing::test_target();
  std::unique_ptr<Backbone> policy, reference;
  diffusion::NoiseSchedule schedule;
  PluginRegistry registry;
  DpoBatch batch;
  int64_t pairs = 0;  // B, from the file: the losses are means over the pairs
  model_io::SafetensorsFile outputs = model_io::SafetensorsFile::open(golden_dir() / "dpo_step" / "outputs.safetensors");

  Golden() {
    const fs::path sd15 = golden_dir() / "unet_sd15_tiny";
    BackboneOptions options;
    options.device = target.device;
    policy = BackboneRegistry::instance().load("unet2d", sd15, options);
    reference = BackboneRegistry::instance().load("unet2d", sd15, options);
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
    if (target.bf16) {  // as in bf16 training: policy float32 under autocast, reference held in bfloat16
      policy->set_autocast(at::kBFloat16);
      reference->to(target.device, at::kBFloat16);
      reference->set_autocast(at::kBFloat16);
    }
    const auto inputs = model_io::SafetensorsFile::open(golden_dir() / "dpo_step" / "inputs.safetensors");
    batch.latents_w = inputs.load("latents_w").to(target.device);
    batch.latents_l = inputs.load("latents_l").to(target.device);
    batch.noise = inputs.load("noise").to(target.device);
    batch.encoder_hidden_states = inputs.load("encoder_hidden_states").to(target.device);
    batch.timesteps = inputs.load("timesteps").to(target.device);
    pairs = batch.latents_w.size(0);
    registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  }

  at::Tensor expected(const std::string& name) const { return outputs.load(name); }
  // The backbone's own autocast is CUDA-only; on the CPU the bf16 run wraps the step in CPU autocast.
  prefdiff::testing::TestTarget step_autocast() const {
    prefdiff::testing::TestTarget t = target;
    t.bf16 = target.bf16 && target.device.is_cpu();
    return t;
  }
  Tolerance tol() const { return tolerance(target); }
};

// max |a - b| <= rel * max |b|, per tensor (the README's rule for parameter gradients).
void expect_close_tensor(const at::Tensor& actual, const at::Tensor& expected, double rel, const std::string& name) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << name;
  // The golden tensors load on the CPU; the step's outputs may be on CUDA (PREFDIFF_TEST_DEVICE).
  const double error =
      (actual.to(torch::kCPU, torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  const double scale = expected.to(torch::kFloat64).abs().max().item<double>();
  std::printf("  %-70s max|a-b| %.3g, max|ref| %.3g (rel %.3g, tolerance %.3g)\n", name.c_str(), error, scale,
              error / scale, rel);
  EXPECT_LE(error, rel * scale) << name << ": max abs error " << error << ", max |expected| " << scale;
}

void expect_relative(double actual, double expected, double rel, const std::string& name) {
  std::printf("  %-70s %.6g vs %.6g (rel %.3g, tolerance %.3g)\n", name.c_str(), actual, expected,
              std::fabs(actual - expected) / std::fabs(expected), rel);
  EXPECT_LE(std::fabs(actual - expected), rel * std::fabs(expected)) << name << ": " << actual << " vs " << expected;
}

void check_gradients(Golden& g, const std::string& prefix) {
  int listed = 0, checked = 0;
  for (const std::string& name : g.outputs.names()) {
    if (name.rfind(prefix + "param_grad.", 0) != 0) continue;
    ++listed;
    const std::string parameter = name.substr(prefix.size() + std::string("param_grad.").size());
    for (const auto& [pname, p] : g.policy->named_parameters())
      if (pname == parameter) {
        ASSERT_TRUE(p.grad().defined()) << parameter << " has no gradient";
        expect_close_tensor(p.grad(), g.expected(name), g.tol().grad, name);
        ++checked;
      }
  }
  EXPECT_GT(listed, 0) << "the reference lists no " << prefix << "param_grad.* tensor";
  EXPECT_EQ(checked, listed) << "every gradient the reference lists names a policy parameter and is checked";
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
