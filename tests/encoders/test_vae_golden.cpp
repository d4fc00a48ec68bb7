// AutoencoderKL vs diffusers' own outputs (golden/vae_tiny): posterior mean/logvar/std, decode, the
// reconstruction and every intermediate the reference has, in float32 and float64, with and without
// batch slicing. Shapes and the list of compared tensors come from the files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/golden.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "vae/autoencoder_kl.hpp"

using prefdiff::model_io::SafetensorsFile;
using namespace prefdiff::testing;
namespace vae = prefdiff::vae;

namespace {

struct Mode {
  bool f64 = false;
  int64_t slice = 0;
};

void run_case(const std::string& name, Mode mode) {
  const auto dir = golden_dir() / name;
  ASSERT_TRUE(std::filesystem::exists(dir)) << dir << " missing; set PREFDIFF_GOLDEN_DIR";
  const auto dtype = mode.f64 ? at::kDouble : at::kFloat;
  vae::VaeOptions opts;
  opts.dtype = dtype;
  opts.slice_size = mode.slice;
  vae::AutoencoderKL model = vae::load_autoencoder_kl(dir, opts);
  ASSERT_EQ(model->dtype(), dtype);

  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ref = SafetensorsFile::open(dir / (mode.f64 ? "outputs_f64.safetensors" : "outputs.safetensors"));
  const at::Tensor image = in.load("image").to(dtype), latents = in.load("latents").to(dtype);
  if (mode.slice) {
    ASSERT_GT(image.size(0), mode.slice) << "the reference batch is too small to exercise slicing";
  }

  at::NoGradGuard no_grad;
  vae::Taps taps;
  const vae::LatentDistribution posterior = model->encode(image, &taps);
  const at::Tensor decoded = model->decode(latents, &taps);
  const at::Tensor reconstruction = model->forward(image);

  // README: float32 |a-b| <= 1e-4 + 1e-4|b| for every output. float64: the README asks 1e-9 (1 + |b|), but
  // this reference's float64 values differ from diffusers' own float64 rerun (diffusers 0.42.1, torch 2.15,
  // the stored float32 weights) by up to 1.0e-7 (reconstruction; 1.5e-8 on posterior_mean), while this port
  // equals that rerun to ~1e-15 (test_vae_diffusers_f64 checks it at 1e-9). So 3x the measured
  // reference-vs-rerun gap here: 3e-7 (1 + |b|), still 300x tighter than the float32 bound.
  const double tol = mode.f64 ? 3e-7 : 1e-4;
  int checked = 0;
  for (const auto& n : ref.names()) {
    at::Tensor a;
    if (n == "posterior_mean") a = posterior.mean;
    else if (n == "posterior_logvar") a = posterior.logvar;
    else if (n == "posterior_std") a = posterior.std;
    else if (n == "decoded") a = decoded;
    else if (n == "reconstruction") a = reconstruction;
    else if (n.rfind("inter.", 0) == 0) {
      auto it = taps.find(n.substr(6));
      ASSERT_NE(it, taps.end()) << "no intermediate for " << n;
      a = it->second;
    } else {
      FAIL() << "unknown reference tensor " << n;
    }
    EXPECT_TRUE(close_elementwise(n, a, ref.load(n), tol, tol));
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

}  // namespace

// The float64 port against diffusers' own float64 run of the same weights today (written by the reference
// fixture, make_encoder_references.py): equal to rounding.
TEST(VaeGolden, TinyFloat64EqualsDiffusersFloat64Rerun) {
  const auto dir = golden_dir() / "vae_tiny";
  const char* set = std::getenv("PREFDIFF_GOLDEN_SET");
  const auto rerun = std::filesystem::path(PREFDIFF_ENCODER_REFERENCE_DIR) / "vae_f64" / (set && *set ? set : "main") /
                     "outputs.safetensors";
  ASSERT_TRUE(std::filesystem::exists(rerun)) << rerun << " missing: run the reference fixture (ctest -R encoder_references)";
  vae::VaeOptions opts;
  opts.dtype = at::kDouble;
  vae::AutoencoderKL model = vae::load_autoencoder_kl(dir, opts);
  auto in = SafetensorsFile::open(dir / "inputs.safetensors");
  auto ref = SafetensorsFile::open(rerun);
  at::NoGradGuard no_grad;
  const vae::LatentDistribution posterior = model->encode(in.load("image"));
  EXPECT_TRUE(close_elementwise("posterior_mean", posterior.mean, ref.load("posterior_mean"), 1e-9, 1e-9));
  EXPECT_TRUE(close_elementwise("posterior_logvar", posterior.logvar, ref.load("posterior_logvar"), 1e-9, 1e-9));
  EXPECT_TRUE(close_elementwise("posterior_std", posterior.std, ref.load("posterior_std"), 1e-9, 1e-9));
  EXPECT_TRUE(close_elementwise("decoded", model->decode(in.load("latents")), ref.load("decoded"), 1e-9, 1e-9));
  EXPECT_TRUE(close_elementwise("reconstruction", model->forward(in.load("image")), ref.load("reconstruction"), 1e-9, 1e-9));
}

TEST(VaeGolden, TinyFloat32) { run_case("vae_tiny", {}); }
TEST(VaeGolden, TinyFloat64) { run_case("vae_tiny", {true, 0}); }
TEST(VaeGolden, TinyFloat32SlicedOneAtATime) { run_case("vae_tiny", {false, 1}); }
