// Which scaled-dot-product-attention kernel every attention call of the SD1.5 and SDXL UNets takes
// (prefdiff::unet2d::attention_backends, ATen's own choice). Everywhere: every call of one forward is listed, with
// its shape. On a GPU in bf16 (PREFDIFF_TEST_DEVICE=cuda, as bench/device/run.sh runs it): none takes the math
// path, which would materialise the attention matrix.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/unet2d/sdpa_backend.hpp"
#include "test_target.hpp"

using namespace prefdiff;
using namespace prefdiff::unet2d;

namespace {

Unet2dConfig fixture(const std::string& name) {
  return Unet2dConfig::from_json(
      model_io::read_json_file(std::filesystem::path(PREFDIFF_SOURCE_DIR) / "tests" / "fixtures" / "configs" / name));
}

struct Case {
  const char* name;
  const char* config;
  ActivationShape shape;  // the benchmark's policy forward: 2 images per pair
  int64_t layers;         // BasicTransformerBlocks in one forward
};

const Case kCases[] = {{"SD1.5", "sd15_unet_config.json", {16, 64, 64, 77}, 16},
                       {"SDXL", "sdxl_unet_config.json", {8, 128, 128, 77}, 70}};

int64_t calls(const std::vector<AttentionCall>& v) {
  int64_t n = 0;
  for (const auto& c : v) n += c.calls;
  return n;
}

}  // namespace

// One self- and one cross-attention call per transformer layer, with the shapes the UNet passes (batch 1 here:
// the CPU only answers which kernel it would take).
TEST(UnetSdpa, ListsEveryAttentionCallOfTheSd15AndSdxlUnets) {
  for (const Case& c : kCases) {
    ActivationShape small = c.shape;
    small.batch = 1;
    const auto v = attention_backends(fixture(c.config), small, at::kFloat, at::kCPU);
    EXPECT_EQ(calls(v), 2 * c.layers) << c.name;
    for (const auto& a : v) {
      EXPECT_NE(a.backend, "error") << c.name;
      EXPECT_EQ(a.kv_len, a.kind == "self" ? a.q_len : small.context_len);
      std::printf("[ sdpa ] %-5s cpu float32 %-5s B=%lld heads=%lld q=%lld kv=%lld d=%lld x%lld: %s\n", c.name,
                  a.kind.c_str(), static_cast<long long>(a.batch), static_cast<long long>(a.heads),
                  static_cast<long long>(a.q_len), static_cast<long long>(a.kv_len), static_cast<long long>(a.head_dim),
                  static_cast<long long>(a.calls), a.backend.c_str());
    }
  }
}

TEST(UnetSdpa, NoAttentionCallFallsBackToMathOnTheGpuInBf16) {
  const auto target = prefdiff::testing::test_target();
  if (!target.device.is_cuda())
    GTEST_SKIP() << "needs PREFDIFF_TEST_DEVICE=cuda: bench/device/run.sh checks this on the GPU machine";
  for (const Case& c : kCases) {
    const auto v = attention_backends(fixture(c.config), c.shape, at::kBFloat16, target.device);
    EXPECT_EQ(calls(v), 2 * c.layers) << c.name;
    for (const auto& a : v) {
      std::printf("[ sdpa ] %-5s %s bf16 %-5s B=%lld heads=%lld q=%lld kv=%lld d=%lld x%lld: %s\n", c.name,
                  target.device.str().c_str(), a.kind.c_str(), static_cast<long long>(a.batch),
                  static_cast<long long>(a.heads), static_cast<long long>(a.q_len), static_cast<long long>(a.kv_len),
                  static_cast<long long>(a.head_dim), static_cast<long long>(a.calls), a.backend.c_str());
      EXPECT_NE(a.backend, "math") << c.name << " " << a.kind << " attention, q_len " << a.q_len;
      EXPECT_NE(a.backend, "error") << c.name;
    }
  }
}
