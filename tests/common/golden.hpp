#pragma once
// Shared by the golden tests: where the reference set lives and the README's tolerance checks.

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "common/golden_path.hpp"

namespace prefdiff::testing {

struct Diff {
  double max_abs = 0;      // max |a-b|
  double max_ref = 0;      // max |b|
  double worst_ratio = 0;  // max |a-b| / (atol + rtol*|b|)
};

inline Diff diff(const at::Tensor& a, const at::Tensor& b, double atol, double rtol) {
  at::Tensor x = a.detach().to(at::kDouble).cpu(), y = b.detach().to(at::kDouble).cpu();
  at::Tensor d = (x - y).abs();
  Diff r;
  r.max_abs = d.numel() ? d.max().item<double>() : 0;
  r.max_ref = y.numel() ? y.abs().max().item<double>() : 0;
  at::Tensor tol = atol + rtol * y.abs();
  // A zero tolerance (exact zero reference, atol 0) demands exact equality rather than 0/0.
  at::Tensor ratio = at::where(tol > 0, d / tol.clamp_min(1e-300), at::where(d > 0, INFINITY, 0.0));
  r.worst_ratio = d.numel() ? ratio.max().item<double>() : 0;
  return r;
}

// Elementwise |a-b| <= atol + rtol*|b| (the README's rule for outputs and intermediates).
inline ::testing::AssertionResult close_elementwise(const std::string& name, const at::Tensor& a, const at::Tensor& b,
                                                    double atol, double rtol) {
  if (!a.defined()) return ::testing::AssertionFailure() << name << ": not produced";
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << name << ": shape " << a.sizes() << " vs reference " << b.sizes();
  Diff d = diff(a, b, atol, rtol);
  ::testing::Test::RecordProperty(name, std::to_string(d.max_abs));
  std::printf("  %-80s max|a-b| %.3g (max|ref| %.3g, %.3g of tolerance)\n", name.c_str(), d.max_abs, d.max_ref, d.worst_ratio);
  if (d.worst_ratio <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": max|a-b| = " << d.max_abs << " exceeds atol " << atol << " + rtol "
                                       << rtol << " * |ref| (worst element at " << d.worst_ratio << "x the tolerance)";
}

// Per tensor max|a-b| <= rel * max|b| + abs (the README's rule for gradients).
inline ::testing::AssertionResult close_maxnorm(const std::string& name, const at::Tensor& a, const at::Tensor& b,
                                                double rel, double abs) {
  if (!a.defined()) return ::testing::AssertionFailure() << name << ": not produced";
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << name << ": shape " << a.sizes() << " vs reference " << b.sizes();
  Diff d = diff(a, b, 0, 0);
  double tol = rel * d.max_ref + abs;
  std::printf("  %-80s max|a-b| %.3g (max|ref| %.3g, %.3g of tolerance)\n", name.c_str(), d.max_abs, d.max_ref, d.max_abs / tol);
  if (d.max_abs <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << name << ": max|a-b| = " << d.max_abs << " > " << tol;
}

}  // namespace prefdiff::testing
