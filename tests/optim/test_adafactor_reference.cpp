// Adafactor against adafactor_reference.py: a float64 numpy implementation of Shazeer & Stern's
// equations (row/column sums, one matrix at a time), written without looking at the C++ code.
#include "prefdiff/optim/optimizer.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <limits>

namespace {

using prefdiff::optim::AdafactorOptions;
using prefdiff::optim::make_adafactor;
using prefdiff::optim::NamedTensors;

const nlohmann::json& reference() {
  static const nlohmann::json j = [] {
    std::ifstream in(PREFDIFF_ADAFACTOR_REFERENCE);
    if (!in)
      throw std::runtime_error(std::string("cannot open ") + PREFDIFF_ADAFACTOR_REFERENCE +
                               "; run the test through ctest (its fixture runs tests/optim/adafactor_reference.py) or "
                               "run that script with the output path");
    return nlohmann::json::parse(in);
  }();
  return j;
}

at::Tensor from_list(const nlohmann::json& values, const std::vector<int64_t>& shape, at::ScalarType dtype) {
  const std::vector<double> v = values.get<std::vector<double>>();
  return at::tensor(at::ArrayRef<double>(v), at::TensorOptions().dtype(at::kDouble)).reshape(shape).to(dtype);
}

// max() that a NaN cannot hide from (std::max(x, NaN) is x).
double worse(double acc, double v) { return std::isnan(v) ? std::numeric_limits<double>::infinity() : std::max(acc, v); }

struct Errors {
  double param = 0, state = 0;  // max |C++ - reference|, params absolute, state relative
};

// Runs one reference case in `dtype` and returns the largest deviations over all steps.
Errors run_case(const nlohmann::json& c, at::ScalarType dtype) {
  const std::vector<int64_t> shape = c.at("shape").get<std::vector<int64_t>>();
  const auto& o = c.at("options");
  AdafactorOptions opt;
  opt.lr = o.at("lr");
  opt.eps1 = o.at("eps1");
  opt.eps2 = o.at("eps2");
  opt.clip_threshold = o.at("clip_threshold");
  opt.decay_rate = o.at("decay_rate");
  opt.weight_decay = o.at("weight_decay");
  at::Tensor p = from_list(c.at("p0"), shape, dtype);
  auto optimizer = make_adafactor({{"p", p}}, opt);
  Errors e;
  const auto& grads = c.at("grads");
  for (size_t t = 0; t < grads.size(); ++t) {
    p.mutable_grad() = from_list(grads[t], shape, dtype);
    optimizer->step();
    const at::Tensor expected = from_list(c.at("params")[t], shape, at::kDouble);
    e.param = worse(e.param, (p.to(at::kDouble) - expected).abs().max().item<double>());
  }
  // The second-moment statistics after the last step, relative (they scale with grad^2).
  auto rel = [](const at::Tensor& got, const at::Tensor& want) {
    return ((got.to(at::kDouble) - want) / want.abs()).abs().max().item<double>();
  };
  NamedTensors state = optimizer->state();
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  EXPECT_EQ(by_name.at("step.p").item<int64_t>(), static_cast<int64_t>(grads.size()));
  if (shape.size() >= 2) {
    std::vector<int64_t> rs(shape.begin(), shape.end() - 1), cs(shape.begin(), shape.end() - 2);
    cs.push_back(shape.back());
    e.state = worse(worse(0.0, rel(by_name.at("exp_avg_sq_row.p"), from_list(c.at("state_row"), rs, at::kDouble))),
                    rel(by_name.at("exp_avg_sq_col.p"), from_list(c.at("state_col"), cs, at::kDouble)));
  } else {
    e.state = worse(0.0, rel(by_name.at("exp_avg_sq.p"), from_list(c.at("state"), shape, at::kDouble)));
  }
  return e;
}

TEST(AdafactorReference, Float64MatchesPaperEquations) {
  // Same algorithm, same float64 inputs: only summation order and rsqrt-vs-division rounding differ,
  // ~1e-16 per operation over a few dozen operations and 6 steps.
  for (const auto& c : reference().at("cases")) {
    const Errors e = run_case(c, at::kDouble);
    std::cout << "[ float64 ] " << c.at("name").get<std::string>() << ": max |dp| = " << e.param
              << ", max rel state err = " << e.state << "\n";
    EXPECT_LT(e.param, 1e-13) << c.at("name");
    EXPECT_LT(e.state, 1e-12) << c.at("name");
  }
}

TEST(AdafactorReference, Float32WithinRounding) {
  // float32: each step rounds p (|p| < 4, half an ulp <= 2.4e-7) and computes the update (|lr*U| <= ~0.1
  // here) with a relative error of a few 1e-7 from ~20 float32 operations; over <= 6 steps the parameter error
  // stays below 6 * (2.4e-7 + 0.1 * 1e-6) ~ 2e-6. The state is a relative float32 quantity (~1e-6 after the
  // rounding of g^2, means and the beta2 mixing; measured <= 2.2e-7).
  for (const auto& c : reference().at("cases")) {
    const Errors e = run_case(c, at::kFloat);
    std::cout << "[ float32 ] " << c.at("name").get<std::string>() << ": max |dp| = " << e.param
              << ", max rel state err = " << e.state << "\n";
    EXPECT_LT(e.param, 2e-6) << c.at("name");
    EXPECT_LT(e.state, 1e-6) << c.at("name");
  }
}

TEST(AdafactorReference, ReferenceExercisesClipping) {
  int clipped = 0;
  for (const auto& c : reference().at("cases"))
    for (const auto& b : c.at("clipped")) clipped += b.get<bool>();
  EXPECT_GE(clipped, 5);
}

}  // namespace
