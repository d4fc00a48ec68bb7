#pragma once
// Where and in which precision the golden tests run. Unset environment = the CPU float32 defaults, so CI and
// every existing run are unchanged. bench/device/run.sh sets these to run the same tests on the GPU:
//
//   PREFDIFF_TEST_DEVICE = cpu (default) | cuda | cuda:N
//   PREFDIFF_TEST_DTYPE  = float32 (default) | bfloat16
//
// float32 on CUDA turns TF32 off (cuBLAS and cuDNN) so the float32 tolerances hold unchanged. bfloat16 means
// what training does: float32 parameters and inputs, the network run under autocast to bfloat16 (on the
// CPU too, where LibTorch has a CPU autocast), compared with the looser tolerances below; the derivation of
// those numbers is in docs/performance.md ("GPU path (H100)").
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

namespace prefdiff::testing {

struct TestTarget {
  c10::Device device = c10::Device(c10::kCPU);
  bool bf16 = false;  // autocast to bfloat16 around the forward passes

  std::string describe() const { return device.str() + (bf16 ? " bfloat16-autocast" : " float32"); }
};

inline TestTarget test_target() {
  TestTarget t;
  if (const char* d = std::getenv("PREFDIFF_TEST_DEVICE"); d && *d) t.device = c10::Device(std::string(d));
  if (const char* p = std::getenv("PREFDIFF_TEST_DTYPE"); p && *p) {
    const std::string s(p);
    if (s == "bfloat16" || s == "bf16")
      t.bf16 = true;
    else if (s != "float32" && s != "fp32")
      throw std::invalid_argument("PREFDIFF_TEST_DTYPE='" + s + "': expected float32 or bfloat16");
  }
  if (t.device.is_cuda()) {
    // The README's float32 tolerances assume true float32 products; LibTorch enables TF32 in cuDNN by default.
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  }
  return t;
}

// RAII autocast to bfloat16 on the target's device type (CUDA or CPU), like `with torch.autocast(...)`.
class TargetAutocast {
 public:
  explicit TargetAutocast(const TestTarget& t) : on_(t.bf16), type_(t.device.type()) {
    if (!on_) return;
    prev_enabled_ = at::autocast::is_autocast_enabled(type_);
    prev_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, at::kBFloat16);
    at::autocast::increment_nesting();
  }
  ~TargetAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(type_, prev_enabled_);
    at::autocast::set_autocast_dtype(type_, prev_dtype_);
  }
  TargetAutocast(const TargetAutocast&) = delete;
  TargetAutocast& operator=(const TargetAutocast&) = delete;

 private:
  bool on_;
  c10::DeviceType type_;
  bool prev_enabled_ = false;
  at::ScalarType prev_dtype_ = at::kFloat;
};

// bfloat16-autocast tolerances, per tensor and normwise: max|a-b| <= rel * max|b| + abs. bf16 keeps 8
// significant bits (unit roundoff 2^-9 = 2e-3 for each rounded GEMM/conv operand). Measured on the tiny
// golden UNets under CPU autocast (docs/performance.md): outputs and intermediates at most 2.0e-2, input and
// parameter gradients at most 5.6e-2; the bounds are ~3x those.
struct Bf16Tolerance {
  double out_rel = 6e-2;    // forward outputs and intermediates
  double grad_rel = 1.5e-1; // input and parameter gradients
  double abs = 1e-6;
};

}  // namespace prefdiff::testing
