#pragma once
// The golden Diffusion-DPO step's models and inputs (golden/dpo_step: the tiny SD1.5 UNet as policy, the
// same UNet with ref.safetensors' overlay as reference, latents, noise, timesteps, text states) and the
// comparisons the step tests share (test_dpo_step_golden.cpp, test_sdpo_step_golden.cpp).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/golden_path.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/train/dpo_step.hpp"
#include "../backbones/test_target.hpp"  // PREFDIFF_TEST_DEVICE / PREFDIFF_TEST_DTYPE (default: CPU float32)

namespace golden_step {
using namespace prefdiff;
namespace fs = std::filesystem;
using prefdiff::testing::golden_dir;

// The README's float32 tolerances, and the bfloat16-autocast ones (measured under CPU autocast, ~3x margin;
// docs/performance.md, "GPU path (H100)"). With beta = 5000 the margin h = -beta/2 * (model_w - model_l -
// ref_w + ref_l) multiplies the per-image MSE error (~3e-4 relative in bf16) by 2500, so h moves by ~1, the
// loss by at most as much (|dloss/dh| < 1), and the gradients, weighted per pair by sigmoid(-h) and made of
// nearly cancelling winner/loser terms, by tens of percent: under bf16 those three checks catch gross
// errors only; the float32 run is the precise one.
struct Tolerance {
  double noisy = 1e-6, pred = 1e-5, mse = 1e-5, h_abs = 5e-3, loss = 1e-3, grad = 2e-3, acc = 1e-6;
};
inline Tolerance tolerance(const prefdiff::testing::TestTarget& t) {
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
inline void expect_close_tensor(const at::Tensor& actual, const at::Tensor& expected, double rel, const std::string& name) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << name;
  // The golden tensors load on the CPU; the step's outputs may be on CUDA (PREFDIFF_TEST_DEVICE).
  const double error =
      (actual.to(torch::kCPU, torch::kFloat64) - expected.to(torch::kFloat64)).abs().max().item<double>();
  const double scale = expected.to(torch::kFloat64).abs().max().item<double>();
  std::printf("  %-70s max|a-b| %.3g, max|ref| %.3g (rel %.3g, tolerance %.3g)\n", name.c_str(), error, scale,
              error / scale, rel);
  EXPECT_LE(error, rel * scale) << name << ": max abs error " << error << ", max |expected| " << scale;
}

inline void expect_relative(double actual, double expected, double rel, const std::string& name) {
  std::printf("  %-70s %.6g vs %.6g (rel %.3g, tolerance %.3g)\n", name.c_str(), actual, expected,
              std::fabs(actual - expected) / std::fabs(expected), rel);
  EXPECT_LE(std::fabs(actual - expected), rel * std::fabs(expected)) << name << ": " << actual << " vs " << expected;
}

inline void check_gradients(Golden& g, const std::string& prefix) {
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

inline void zero_grads(Backbone& model) {
  for (auto& [name, p] : model.named_parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}


}  // namespace golden_step
