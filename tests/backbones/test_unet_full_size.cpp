// Full-size SD1.5 UNet (859.5M parameters, fp32) forward at 1x4x64x64 on the CPU. Slow (ctest label
// "slow"): proves the real configuration runs end to end, with sane activations, within memory.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>

#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/unet2d/unet2d_backbone.hpp"

TEST(UnetFullSize, Sd15ForwardOnCpu) {
  auto config = prefdiff::model_io::read_json_file(std::filesystem::path(PREFDIFF_SOURCE_DIR) / "tests" / "fixtures" /
                                                   "configs" / "sd15_unet_config.json");
  at::manual_seed(0);
  auto unet = prefdiff::BackboneRegistry::instance().create("unet2d", config);
  int64_t n = 0;
  for (auto& [name, p] : unet->named_parameters()) n += p.numel();
  ASSERT_EQ(n, 859520964);
  at::NoGradGuard ng;
  at::Tensor x = at::randn({1, 4, 64, 64}), ctx = at::randn({1, 77, 768});
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor y = unet->forward(x, at::tensor({500}), ctx);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("  SD1.5 fp32 forward 1x4x64x64: %.2f s on %d threads\n", s, at::get_num_threads());
  EXPECT_EQ(y.sizes(), x.sizes());
  EXPECT_TRUE(y.isfinite().all().item<bool>());
  double sd = y.std().item<double>();
  EXPECT_GT(sd, 1e-3);
  EXPECT_LT(sd, 1e3);
}
