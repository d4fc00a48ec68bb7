// The fused CUDA Adafactor (framework/src/optim/adafactor_fused.cu) against the per-tensor update run in float64
// on the CPU: every parameter and state after several steps, to float32 rounding. Every path of the kernels is
// taken: full (1-D) parameters, small factored matrices (3x3 and 1x1 convolution kernels, one thread each), large
// ones (row tiles, a partial last tile, leading dimensions), groups of several tensors of one shape, and a
// float64 parameter the kernels leave to the ATen path. Needs a GPU: skipped, with the reason, elsewhere.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <string>
#include <vector>

#include "prefdiff/optim/optimizer.hpp"

using namespace prefdiff::optim;

namespace {

const std::vector<std::vector<int64_t>> kShapes = {
    {700},           {1},         {300, 700},     {300, 700},   {5, 40, 70}, {64, 32, 3, 3}, {64, 32, 3, 3},
    {8, 4, 1, 1},    {3, 9},      {17, 3},        {2, 33, 300}, {4, 320},    {1280},         {1280}};

NamedTensors named(const std::vector<at::Tensor>& ts) {
  NamedTensors out;
  for (size_t i = 0; i < ts.size(); ++i) out.emplace_back("p" + std::to_string(i), ts[i]);
  return out;
}

double max_abs(const at::Tensor& t) { return t.numel() ? t.abs().max().item<double>() : 0.0; }

}  // namespace

TEST(AdafactorFused, MatchesTheFloat64UpdateToFloat32Rounding) {
  if (!torch::cuda::is_available())
    GTEST_SKIP() << "no CUDA device here: the fused Adafactor kernels are checked on the GPU machine "
                    "(bench/device/run.sh runs this test there)";
  at::manual_seed(11);
  std::vector<at::Tensor> start, fused_params, reference_params;
  for (const auto& shape : kShapes) {
    at::Tensor p = at::randn(shape) * 0.1;
    start.push_back(p);
    fused_params.push_back(p.to(at::kCUDA).requires_grad_(true));
    reference_params.push_back(p.to(at::kDouble).requires_grad_(true));
  }
  // One float64 parameter on the GPU: not eligible for the kernels, updated by the batched ATen path instead.
  at::Tensor p64 = at::randn({6, 5}, at::kDouble);
  start.push_back(p64.to(at::kFloat));
  fused_params.push_back(p64.to(at::kCUDA).requires_grad_(true));
  reference_params.push_back(p64.clone().requires_grad_(true));

  AdafactorOptions o;
  o.lr = 1e-2;  // large, so that the updates are far above the float32 rounding of the weights
  o.weight_decay = 1e-2;
  o.batched = true;
  o.fused = true;
  auto fused = make_adafactor(named(fused_params), o);
  o.batched = false;
  o.fused = false;
  auto reference = make_adafactor(named(reference_params), o);

  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < start.size(); ++i) {
      // Gradients of very different scales per tensor (the RMS clip is active for some, not for others).
      const at::Tensor g = at::randn(start[i].sizes()) * std::pow(10.0, static_cast<double>(i % 4) - 2.0);
      fused_params[i].mutable_grad() = g.to(fused_params[i].options());
      reference_params[i].mutable_grad() = g.to(at::kDouble);
    }
    fused->step();
    reference->step();
  }
  double worst = 0;
  for (size_t i = 0; i < start.size(); ++i) {
    const at::Tensor f = fused_params[i].detach().cpu().to(at::kDouble), r = reference_params[i].detach();
    const double moved = max_abs(r - start[i].to(at::kDouble));
    const double tolerance = 1e-4 * moved + 4 * 6e-8 * max_abs(r);
    const double err = max_abs(f - r);
    EXPECT_LE(err, tolerance) << "parameter " << i << " shape " << start[i].sizes() << ": moved " << moved;
    EXPECT_GT(moved, 1e-3) << "parameter " << i << " must have moved well above rounding";
    worst = std::max(worst, err / tolerance);
  }
  // The states too (row/column or full second moments), relative to their size.
  const auto fs = fused->state(), rs = reference->state();
  ASSERT_EQ(fs.size(), rs.size());
  for (size_t i = 0; i < fs.size(); ++i) {
    ASSERT_EQ(fs[i].first, rs[i].first);
    if (fs[i].first.rfind("step.", 0) == 0) {
      EXPECT_TRUE(at::equal(fs[i].second, rs[i].second)) << fs[i].first;
      continue;
    }
    const at::Tensor f = fs[i].second.cpu().to(at::kDouble), r = rs[i].second;
    EXPECT_LE(max_abs(f - r), 1e-5 * max_abs(r)) << fs[i].first;
  }
  std::printf("[ fused Adafactor ] worst parameter error / tolerance: %.3f\n", worst);
}

// On CPU parameters the fused option changes nothing: the kernels only take CUDA float32 tensors, the rest is
// the batched ATen update, bit for bit the per-tensor loop (runs everywhere).
TEST(AdafactorFused, CpuParametersTakeTheBatchedAtenPath) {
  at::manual_seed(12);
  std::vector<at::Tensor> a, b;
  for (const auto& shape : kShapes) {
    at::Tensor p = at::randn(shape);
    a.push_back(p.clone().requires_grad_(true));
    b.push_back(p.clone().requires_grad_(true));
  }
  AdafactorOptions o;
  o.lr = 1e-2;
  o.batched = false;
  o.fused = false;
  auto loop = make_adafactor(named(a), o);
  o.batched = true;
  o.fused = std::nullopt;  // default: on where the kernels exist
  auto batched = make_adafactor(named(b), o);
  for (int step = 0; step < 3; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      const at::Tensor g = at::randn(a[i].sizes());
      a[i].mutable_grad() = g.clone();
      b[i].mutable_grad() = g.clone();
    }
    loop->step();
    batched->step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i], b[i])) << "parameter " << i;
}
