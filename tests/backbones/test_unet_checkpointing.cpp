// Activation checkpointing of the UNet: recomputation under autocast uses the current weights, the saved-
// activation estimate against the bytes LibTorch's CPU allocator really holds after a forward, the choice of
// checkpointed units by a memory budget, and gradients that do not depend on the choice (bit for bit on the CPU,
// where the recomputation is deterministic).
#include <ATen/ATen.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <set>

#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/unet2d/activation_memory.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"
#include "test_target.hpp"

using namespace prefdiff;
using namespace prefdiff::unet2d;
using json = nlohmann::json;

namespace {

json tiny_sd15() {
  return {{"block_out_channels", {32, 64}}, {"layers_per_block", 2}, {"sample_size", 32},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}}, {"cross_attention_dim", 32}};
}

// Between tiny and SD1.5: three levels, two transformer layers at the lowest, linear projections, 8 heads.
json mid_size() {
  return {{"block_out_channels", {64, 128, 192}}, {"layers_per_block", 2}, {"sample_size", 32},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
          {"transformer_layers_per_block", {1, 1, 2}}, {"attention_head_dim", {4, 8, 8}},
          {"use_linear_projection", true}, {"cross_attention_dim", 96}};
}

std::vector<at::Tensor> parameters_of(Backbone& net) {
  std::vector<at::Tensor> out;
  for (auto& [n, p] : net.named_parameters()) out.push_back(p);
  return out;
}

}  // namespace

// The recomputation in backward runs under the forward's autocast state. Autocast caches the low-precision
// copy of every weight it casts until the outermost autocast scope ends; a recomputation outside any scope
// (backward runs after the forward's scope closed) must not leave its copies behind, or the next step's
// forward and recomputation would reuse the previous step's weights. Compared: a UNet that trained a step before
// its weights moved, and a fresh one given the moved weights, both checkpointed: the same kernels on the same
// numbers, so bit for bit (before the fix every gradient differed, by up to 1e26 with larger weight moves).
TEST(UnetCheckpointing, RecomputationUnderAutocastUsesTheCurrentWeights) {
  prefdiff::testing::TestTarget cpu_bf16;
  cpu_bf16.bf16 = true;
  at::manual_seed(3);
  auto net = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  auto fresh = BackboneRegistry::instance().create("unet2d", tiny_sd15());
  for (auto* m : {net.get(), fresh.get()}) {
    m->train(true);
    m->set_gradient_checkpointing(true);
  }
  const at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 3, 32}), t = at::tensor({3, 900});
  auto step = [&](Backbone& model) {
    at::Tensor loss;
    {
      prefdiff::testing::TargetAutocast autocast(cpu_bf16);
      loss = model.forward(x, t, ctx).to(at::kFloat).square().mean();
    }
    auto params = parameters_of(model);
    return torch::autograd::grad({loss}, params);
  };
  step(*net);  // its recomputation casts every weight once
  {
    at::NoGradGuard no_grad;  // an optimizer step: every weight moves by ~10%
    for (auto& p : parameters_of(*net)) p.mul_(1.0 + 0.1 * at::randn_like(p));
    auto dst = parameters_of(*fresh), src = parameters_of(*net);
    for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
  }
  const auto trained = step(*net);
  const auto reference = step(*fresh);  // never ran before: nothing cached for its weights
  ASSERT_EQ(trained.size(), reference.size());
  for (size_t i = 0; i < reference.size(); ++i)
    EXPECT_TRUE(at::equal(trained[i], reference[i])) << "parameter " << i << ": max |diff| "
                                                     << (trained[i] - reference[i]).abs().max().item<double>();
}

// ------------------------------------------------------------------------------ the saved-activation estimate

namespace {

// Live bytes of LibTorch's CPU allocator on this thread, through the profiler's memory-reporting hook.
class CpuAllocationTracker final : public c10::MemoryReportingInfoBase {
 public:
  void reportMemoryUsage(void*, int64_t alloc_size, size_t, size_t, c10::Device device) override {
    if (!device.is_cpu()) return;
    live_ += alloc_size;
    peak_ = std::max(peak_, live_);
  }
  bool memoryProfilingEnabled() const override { return true; }
  int64_t live() const { return live_; }
  int64_t peak() const { return peak_; }

 private:
  int64_t live_ = 0, peak_ = 0;
};

struct Measured {
  double saved = 0;      // live after the forward, the output excluded
  double estimated = 0;  // the estimate's saved_bytes
};

// Forward of a fresh UNet with exactly `units` checkpointed; the bytes the forward leaves allocated.
Measured measure(const json& config, const ActivationShape& shape, const std::vector<bool>& checkpointed, bool bf16) {
  at::set_num_threads(1);  // the tracker sees this thread's allocations
  at::manual_seed(1);
  const Unet2dConfig cfg = Unet2dConfig::from_json(config);
  Unet2dModel net(cfg, at::TensorOptions());
  net->train(true);
  ActivationPrecision precision = bf16 ? ActivationPrecision::cpu_autocast16() : ActivationPrecision::float32();
  precision.checkpoint_state_bytes = 5056;  // the CPU generator's state
  const ActivationEstimate e = estimate_activations(cfg, shape, precision);
  std::vector<std::string> names;
  for (size_t u = 0; u < e.units.size(); ++u)
    if (checkpointed[u]) names.push_back(e.units[u].name);
  net->set_checkpoint_units(names);
  const int64_t X = cfg.cross_attention_dim.back();
  const at::Tensor x = at::randn({shape.batch, cfg.in_channels, shape.height, shape.width});
  const at::Tensor ctx = at::randn({shape.batch, shape.context_len, X}), t = at::full({shape.batch}, 500, at::kLong);
  prefdiff::testing::TestTarget target;
  target.bf16 = bf16;
  auto tracker = std::make_shared<CpuAllocationTracker>();
  Measured m;
  {
    c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, tracker);
    at::Tensor out;
    {
      prefdiff::testing::TargetAutocast autocast(target);
      out = net->forward(x, t, ctx);
    }
    m.saved = static_cast<double>(tracker->live()) - static_cast<double>(out.nbytes());
    EXPECT_EQ(net->last_checkpoint_choice().checkpointed.size(), names.size());
  }
  m.estimated = e.saved_bytes(checkpointed);
  return m;
}

json mid_size_sdxl_like() {
  json c = mid_size();
  c["addition_embed_type"] = "text_time";
  c["addition_time_embed_dim"] = 32;
  c["projection_class_embeddings_input_dim"] = 32 * 6 + 48;
  return c;
}

}  // namespace

// The estimate against what the CPU allocator holds after a forward, for no, every and every other unit
// checkpointed, on the tiny and a mid-size UNet: float32 to the byte (measured 2026-11-28), CPU bf16 autocast
// within 1.2% (measured; bound 3%: the norms' statistics and bias casts are not modelled exactly). CUDA's
// autocast differs from the CPU's only in running the norms in float32, which bench/device/run.sh checks there.
TEST(UnetCheckpointing, SavedActivationEstimateMatchesTheCpuAllocator) {
  struct Case {
    const char* name;
    json config;
    ActivationShape shape;
  };
  const std::vector<Case> cases = {{"tiny 16x16", tiny_sd15(), {2, 16, 16, 7}},
                                   {"mid-size 32x32", mid_size(), {2, 32, 32, 77}}};
  for (const auto& c : cases) {
    const size_t units = estimate_activations(Unet2dConfig::from_json(c.config), c.shape, ActivationPrecision::float32())
                             .units.size();
    std::vector<bool> none(units, false), all(units, true), alternate(units, false);
    for (size_t u = 0; u < units; u += 2) alternate[u] = true;
    for (const auto& [plan_name, plan] : std::vector<std::pair<std::string, std::vector<bool>>>{
             {"none", none}, {"all", all}, {"alternate", alternate}}) {
      const Measured m = measure(c.config, c.shape, plan, false);
      std::printf("[ estimate ] %-15s float32 %-9s measured %10.0f estimated %10.0f ratio %.4f\n", c.name,
                  plan_name.c_str(), m.saved, m.estimated, m.estimated / m.saved);
      EXPECT_EQ(std::llround(m.estimated), std::llround(m.saved)) << c.name << " " << plan_name << " (float32, bytes)";
      const Measured b = measure(c.config, c.shape, plan, true);
      std::printf("[ estimate ] %-15s bf16    %-9s measured %10.0f estimated %10.0f ratio %.4f\n", c.name,
                  plan_name.c_str(), b.saved, b.estimated, b.estimated / b.saved);
      EXPECT_NEAR(b.estimated / b.saved, 1.0, 0.03) << c.name << " " << plan_name << " (CPU bf16 autocast)";
    }
  }
}

// ------------------------------------------------------------------------- gradients and the budget's choice

namespace {

std::vector<at::Tensor> gradients(Unet2dModel& net, bool bf16) {
  at::manual_seed(5);
  const at::Tensor x = at::randn({2, 4, 16, 16}), ctx = at::randn({2, 7, 32}), t = at::tensor({3, 900});
  prefdiff::testing::TestTarget target;
  target.bf16 = bf16;
  at::Tensor loss;
  {
    prefdiff::testing::TargetAutocast autocast(target);
    loss = net->forward(x, t, ctx).to(at::kFloat).square().mean();
  }
  return torch::autograd::grad({loss}, net->parameters());
}

json fixture(const std::string& name) {
  return model_io::read_json_file(std::filesystem::path(PREFDIFF_SOURCE_DIR) / "tests" / "fixtures" / "configs" / name);
}

}  // namespace

// Gradients do not depend on which units are checkpointed (none, all, every other one, a budget's choice), in
// float32 and under bf16 autocast. Bit for bit for every parameter whose gradient has a single path back from
// the loss (mid block, up blocks, head), in both precisions; the down blocks receive the sum of two gradients at each skip
// connection, whose arrival order changes with the checkpoints, so there they agree to rounding (float32:
// 1e-5 of the gradient's size, or 1e-6 of the largest gradient for the ones that are zero but for rounding,
// like a bias before a GroupNorm; bf16: 5e-2 and 1e-3, the roundoff of the activations' gradients).
TEST(UnetCheckpointing, GradientsDoNotDependOnWhichUnitsAreCheckpointed) {
  const Unet2dConfig cfg = Unet2dConfig::from_json(tiny_sd15());
  at::manual_seed(4);
  Unet2dModel net(cfg, at::TensorOptions());
  net->train(true);
  std::vector<std::string> names;
  for (const auto& p : net->named_parameters()) names.push_back(p.key());
  const auto units = estimate_activations(cfg, {2, 16, 16, 7}, ActivationPrecision::float32()).units;
  std::vector<std::string> alternate;
  for (size_t u = 0; u < units.size(); u += 2) alternate.push_back(units[u].name);
  for (bool bf16 : {false, true}) {
    net->set_checkpoint_units(std::nullopt);
    net->set_activation_budget(std::nullopt);
    net->set_gradient_checkpointing(false);
    const auto plain = gradients(net, bf16);
    double largest = 0;
    for (const auto& g : plain) largest = std::max(largest, g.abs().max().item<double>());
    for (const std::string plan : {"all", "alternate", "budget"}) {
      net->set_gradient_checkpointing(plan == "all");
      net->set_checkpoint_units(plan == "alternate" ? std::optional<std::vector<std::string>>(alternate) : std::nullopt);
      net->set_activation_budget(plan == "budget" ? std::optional<double>(3e6) : std::nullopt);
      const auto g = gradients(net, bf16);
      const auto& choice = net->last_checkpoint_choice();
      EXPECT_GT(choice.checkpointed.size(), 0u) << plan;
      if (plan == "budget") EXPECT_LT(choice.checkpointed.size(), units.size());
      size_t bitwise = 0;
      for (size_t i = 0; i < g.size(); ++i) {
        const bool single_path = names[i].rfind("up_blocks", 0) == 0 || names[i].rfind("mid_block", 0) == 0 ||
                                 names[i].rfind("conv_norm_out", 0) == 0 || names[i].rfind("conv_out", 0) == 0;
        if (at::equal(g[i], plain[i])) ++bitwise;
        const double diff = (g[i] - plain[i]).abs().max().item<double>(), size = plain[i].abs().max().item<double>();
        if (single_path) {
          EXPECT_TRUE(at::equal(g[i], plain[i])) << plan << " " << names[i] << " differs by " << diff;
        } else {
          const double tol = bf16 ? 5e-2 * size + 1e-3 * largest : 1e-5 * size + 1e-6 * largest;
          EXPECT_LE(diff, tol) << plan << (bf16 ? " bf16 " : " float32 ") << names[i];
        }
      }
      std::printf("[ gradients ] %-9s %-8s %3zu of %zu parameters bit for bit\n", plan.c_str(),
                  bf16 ? "bf16" : "float32", bitwise, g.size());
    }
  }
}

// The budget decides: no unit checkpointed when everything fits, every unit when nothing does (and the plan says
// it does not fit), and in between the estimated peak never exceeds the budget and the recomputation shrinks as
// the budget grows. On the real SD1.5 and SDXL configs at the benchmark's batch (no memory allocated).
TEST(UnetCheckpointing, TheChoiceFollowsTheBudget) {
  struct Case {
    const char* name;
    json config;
    ActivationShape shape;
  };
  for (const Case& c : {Case{"SD1.5, 16 x 64x64", fixture("sd15_unet_config.json"), {16, 64, 64, 77}},
                        Case{"SDXL, 8 x 128x128", fixture("sdxl_unet_config.json"), {8, 128, 128, 77}}}) {
    const ActivationEstimate e =
        estimate_activations(Unet2dConfig::from_json(c.config), c.shape, ActivationPrecision::autocast16());
    const size_t n = e.units.size();
    const double none = e.peak_bytes(std::vector<bool>(n, false)), all = e.peak_bytes(std::vector<bool>(n, true));
    ASSERT_LT(all, none / 3) << c.name;
    const CheckpointPlan everything = plan_checkpointing(e, none);
    EXPECT_EQ(std::count(everything.checkpointed.begin(), everything.checkpointed.end(), true), 0) << c.name;
    EXPECT_EQ(everything.recompute_flops, 0.0);
    const CheckpointPlan nothing = plan_checkpointing(e, 0.5 * all);
    EXPECT_FALSE(nothing.fits);
    EXPECT_EQ(static_cast<size_t>(std::count(nothing.checkpointed.begin(), nothing.checkpointed.end(), true)), n);
    EXPECT_TRUE(plan_checkpointing(e, all).fits);
    double previous = nothing.recompute_flops * 1.0000001;
    std::printf("[ budget ] %s: no checkpointing %.2f GiB, every unit %.2f GiB (%zu units, %.1f TFLOP recomputed)\n",
                c.name, none / (1 << 30), all / (1 << 30), n, nothing.recompute_flops / 1e12);
    for (int k = 0; k <= 10; ++k) {
      const double budget = all + (none - all) * k / 10.0;
      const CheckpointPlan plan = plan_checkpointing(e, budget);
      EXPECT_TRUE(plan.fits);
      EXPECT_LE(plan.peak_bytes, budget * (1 + 1e-12)) << c.name << " budget " << budget;
      EXPECT_LE(plan.recompute_flops, previous) << c.name << " budget " << budget;
      previous = plan.recompute_flops;
      std::printf("[ budget ]   budget %6.2f GiB: %3zu units checkpointed, peak %6.2f GiB, %6.2f TFLOP recomputed\n",
                  budget / (1 << 30),
                  static_cast<size_t>(std::count(plan.checkpointed.begin(), plan.checkpointed.end(), true)),
                  plan.peak_bytes / (1 << 30), plan.recompute_flops / 1e12);
    }
  }
}

// A training forward with a budget checkpoints exactly what plan_checkpointing picks for its input shape, and
// the module paths of the estimate are the UNet's own (a name that is not a unit is refused).
TEST(UnetCheckpointing, TheForwardCheckpointsThePlannedUnits) {
  const Unet2dConfig cfg = Unet2dConfig::from_json(mid_size());
  Unet2dModel net(cfg, at::TensorOptions());
  net->train(true);
  ActivationPrecision precision = ActivationPrecision::float32();
  precision.checkpoint_state_bytes = 5056;
  const ActivationShape shape{2, 16, 16, 5};
  const ActivationEstimate e = estimate_activations(cfg, shape, precision);
  const double budget = 0.5 * (e.peak_bytes(std::vector<bool>(e.units.size(), true)) +
                               e.peak_bytes(std::vector<bool>(e.units.size(), false)));
  const CheckpointPlan plan = plan_checkpointing(e, budget);
  net->set_activation_budget(budget);
  net->forward(at::randn({2, 4, 16, 16}), at::tensor({1, 2}), at::randn({2, 5, 96}));
  std::vector<std::string> expected;
  for (size_t u = 0; u < e.units.size(); ++u)
    if (plan.checkpointed[u]) expected.push_back(e.units[u].name);
  const auto& choice = net->last_checkpoint_choice();
  EXPECT_EQ(choice.mode, "budget");
  EXPECT_EQ(choice.checkpointed, expected);
  EXPECT_FALSE(expected.empty());
  EXPECT_LT(expected.size(), e.units.size());
  std::set<std::string> modules;
  for (const auto& m : net->named_modules()) modules.insert(m.key());
  for (const auto& u : e.units) {
    const bool proj_in = u.kind == UnitKind::kTransformerIn;
    const std::string module = proj_in ? u.name.substr(0, u.name.size() - std::string(".proj_in").size()) : u.name;
    EXPECT_TRUE(modules.count(module)) << u.name;
  }
  try {
    net->set_checkpoint_units(std::vector<std::string>{"down_blocks.0.resnets.7"});
    FAIL() << "an unknown unit must be refused";
  } catch (const std::invalid_argument& err) {
    EXPECT_NE(std::string(err.what()).find("'down_blocks.0.resnets.7' is not a checkpointing unit"), std::string::npos);
  }
}
