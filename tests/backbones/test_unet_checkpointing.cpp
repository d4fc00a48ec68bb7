// Activation checkpointing of the UNet: recomputation under autocast uses the current weights.
#include <ATen/ATen.h>
#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>

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

