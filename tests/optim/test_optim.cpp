// AdamW against closed forms, bit-identical resume through safetensors, state validation, schedules,
// gradient clipping, EMA and the recipe factory.
#include "prefdiff/model_io/safetensors.hpp"
#include "prefdiff/optim/ema.hpp"
#include "prefdiff/optim/grad_clip.hpp"
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/optim/schedule.hpp"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>

namespace {

using namespace prefdiff::optim;
namespace fs = std::filesystem;

// max() that a NaN cannot hide from (std::max(x, NaN) is x).
double worse(double acc, double v) { return std::isnan(v) ? std::numeric_limits<double>::infinity() : std::max(acc, v); }

at::Tensor f64(std::vector<double> v) { return at::tensor(at::ArrayRef<double>(v), at::kDouble); }

void expect_throw_containing(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const OptimError& e) {
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------- AdamW

TEST(AdamW, ConstantGradientClosedForm) {
  // With a constant gradient g the bias-corrected moments are exactly g and g^2, so every step is
  //   p <- a p - lr s,  a = 1 - lr wd,  s = g / (|g| + eps)   =>   p_t = a^t p0 - lr s (1 - a^t) / (1 - a).
  const double lr = 1e-2, wd = 1e-2, eps = 1e-8;
  const std::vector<double> p0 = {0.5, -1.25, 2.0, 0.0, 3.0}, g = {0.3, -2.0, 1e-3, 5.0, -1e-9};
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    at::Tensor p = f64(p0).to(dtype);
    auto opt = make_adamw({{"w", p}}, AdamWOptions{lr, 0.9, 0.999, eps, wd, std::nullopt});
    double max_err = 0;
    for (int t = 1; t <= 12; ++t) {
      p.mutable_grad() = f64(g).to(dtype);
      opt->step();
      const double a = 1 - lr * wd, at_ = std::pow(a, t);
      for (size_t i = 0; i < p0.size(); ++i) {
        const double s = g[i] / (std::abs(g[i]) + eps);
        const double expected = at_ * p0[i] - lr * s * (1 - at_) / (1 - a);
        max_err = worse(max_err, std::abs(p[i].item<double>() - expected));
      }
    }
    std::cout << "[ adamw " << c10::toString(dtype) << " ] closed form max |dp| = " << max_err << "\n";
    // float64: rounding only (~1e-16 relative per op). float32: 12 roundings of |p| <= 3 (half ulp 1.2e-7 each)
    // plus the moments' relative error (~1e-6) times lr = 1e-2.
    EXPECT_LT(max_err, dtype == at::kDouble ? 1e-14 : 2e-6);
  }
}

TEST(AdamW, VaryingGradientMatchesTextbookRecurrence) {
  // Loshchilov & Hutter's AdamW with torch's conventions (decay before the moment update, eps outside the
  // square root, bias corrections 1 - beta^t), evaluated here in double.
  const AdamWOptions o{3e-2, 0.8, 0.95, 1e-6, 0.1, std::nullopt};
  const int n = 6;
  at::Tensor p = at::linspace(-1, 1, n, at::kDouble);
  std::vector<double> ref(p.data_ptr<double>(), p.data_ptr<double>() + n), m(n, 0), v(n, 0);
  auto opt = make_adamw({{"w", p}}, o);
  double max_err = 0;
  for (int t = 1; t <= 8; ++t) {
    std::vector<double> g(n);
    for (int i = 0; i < n; ++i) g[i] = std::sin(1.7 * t + i) * (1 + i);
    p.mutable_grad() = f64(g);
    opt->step();
    for (int i = 0; i < n; ++i) {
      ref[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const double mh = m[i] / (1 - std::pow(o.beta1, t)), vh = v[i] / (1 - std::pow(o.beta2, t));
      ref[i] -= o.lr * mh / (std::sqrt(vh) + o.eps);
      max_err = worse(max_err, std::abs(p[i].item<double>() - ref[i]));
    }
  }
  std::cout << "[ adamw float64 ] textbook recurrence max |dp| = " << max_err << "\n";
  EXPECT_LT(max_err, 1e-14);
}

TEST(AdamW, LrAndZeroGrad) {
  at::Tensor p = at::ones({3});
  auto opt = make_adamw({{"w", p}}, AdamWOptions{});
  EXPECT_EQ(opt->name(), "adamw");
  opt->set_lr(0.0);
  EXPECT_EQ(opt->lr(), 0.0);
  p.mutable_grad() = at::ones({3});
  opt->step();
  EXPECT_TRUE(at::equal(p, at::ones({3})));  // lr 0: decay lr*wd and the update both vanish
  opt->zero_grad();
  EXPECT_FALSE(p.grad().defined());
}

// ---------------------------------------------------------------- resume

// Several shapes (Adafactor factors ndim >= 2) and one parameter that only gets gradients from step 3,
// so per-parameter step counters differ and a checkpoint may lack its entries.
NamedTensors make_params(at::ScalarType dtype) {
  at::manual_seed(7);
  NamedTensors params = {{"down.bias", at::randn({5}).to(dtype)},
                         {"down.weight", at::randn({4, 6}).to(dtype)},
                         {"conv.weight", at::randn({3, 2, 3, 3}).to(dtype)},
                         {"late.weight", at::randn({2, 3}).to(dtype)}};
  for (auto& np : params) np.second.requires_grad_(true);
  return params;
}

void set_grads(NamedTensors& params, int64_t step) {
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i].second;
    if (params[i].first == "late.weight" && step < 3) continue;
    // Depends on the weights, so any drift in the resumed weights would show.
    p.mutable_grad() = (p.detach() * 1.3 + std::sin(0.37 * step + i)).sin() * (1.0 + 0.5 * i);
  }
}

void run_steps(Optimizer& opt, NamedTensors& params, const LrSchedule& sched, int64_t from, int64_t to) {
  for (int64_t s = from; s < to; ++s) {
    opt.zero_grad();
    set_grads(params, s);
    opt.set_lr(sched.lr_at(s));
    opt.step();
  }
}

// multi_tensor: the recipe's [optim] multi_tensor ("auto": on the CPU, the per-tensor loops).
void check_resume(const std::string& name, at::ScalarType dtype, const std::string& multi_tensor = "auto") {
  const int64_t N = 9, K = 4;
  const LrSchedule sched(ScheduleKind::kCosine, 5e-2, 3, N, 0.1);
  const nlohmann::json section = {{"name", name}, {"lr", 5e-2}, {"multi_tensor", multi_tensor}};
  auto build_optimizer = [&](const NamedTensors& params) { return make_optimizer(section, params); };

  NamedTensors straight = make_params(dtype);
  auto a = build_optimizer(straight);
  run_steps(*a, straight, sched, 0, N);

  NamedTensors first = make_params(dtype);
  auto b = build_optimizer(first);
  run_steps(*b, first, sched, 0, K);
  // Through the checkpoint format: weights and optimizer state in safetensors files.
  const fs::path dir = fs::temp_directory_path() / ("prefdiff_optim_resume_" + name + "_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  prefdiff::model_io::write_safetensors(dir / "weights.safetensors", first);
  prefdiff::model_io::write_safetensors(dir / "optimizer.safetensors", b->state());
  b.reset();
  first.clear();

  // The file is sorted by name; the trainer passes the model's order, as here.
  NamedTensors loaded = prefdiff::model_io::SafetensorsFile::open(dir / "weights.safetensors").load_all();
  std::map<std::string, at::Tensor> by_name(loaded.begin(), loaded.end());
  NamedTensors resumed;
  for (const auto& np : straight) resumed.emplace_back(np.first, by_name.at(np.first).requires_grad_(true));
  auto c = build_optimizer(resumed);
  c->load_state(prefdiff::model_io::SafetensorsFile::open(dir / "optimizer.safetensors").load_all());
  run_steps(*c, resumed, sched, K, N);
  fs::remove_all(dir);

  std::map<std::string, at::Tensor> want(straight.begin(), straight.end());
  for (const auto& [n, p] : resumed) EXPECT_TRUE(at::equal(p, want.at(n))) << name << " " << n;
  // The states agree bit for bit too.
  auto sa = a->state(), sc = c->state();
  std::map<std::string, at::Tensor> sa_map(sa.begin(), sa.end());
  ASSERT_EQ(sa.size(), sc.size());
  for (const auto& [n, t] : sc) EXPECT_TRUE(at::equal(t, sa_map.at(n))) << name << " " << n;
}

TEST(Resume, AdamWBitIdentical) { check_resume("adamw", at::kFloat); }
TEST(Resume, FusedAdamWBitIdentical) { check_resume("adamw", at::kFloat, "on"); }
TEST(Resume, BatchedAdafactorBitIdentical) { check_resume("adafactor", at::kFloat, "on"); }
TEST(Resume, BatchedAdafactorBf16ParamsBitIdentical) { check_resume("adafactor", at::kBFloat16, "on"); }

// The multi-tensor path (fused AdamW, Adafactor batched by shape; the CUDA default, forced here on the
// CPU) computes the per-tensor loop's update: 9 steps from the same parameters, compared parameter by
// parameter (max |difference| <= rel * max |value|) and state by state.
void expect_multi_tensor_matches_loop(const std::function<std::unique_ptr<Optimizer>(const NamedTensors&, bool)>& make,
                                      const std::function<NamedTensors()>& make_parameters, double rel,
                                      const std::string& label) {
  const LrSchedule sched(ScheduleKind::kCosine, 5e-2, 3, 9, 0.1);
  NamedTensors loop = make_parameters(), multi = make_parameters();
  const NamedTensors start = make_parameters();
  auto a = make(loop, false);
  auto b = make(multi, true);
  ASSERT_FALSE(a->multi_tensor());
  ASSERT_TRUE(b->multi_tensor());
  run_steps(*a, loop, sched, 0, 9);
  run_steps(*b, multi, sched, 0, 9);
  for (size_t i = 0; i < loop.size(); ++i) {
    const at::Tensor x = loop[i].second.to(at::kDouble), y = multi[i].second.to(at::kDouble);
    const double err = (x - y).abs().max().item<double>(), scale = x.abs().max().item<double>();
    std::cout << "[ " << label << " multi-tensor vs loop ] " << loop[i].first << " max |dp| " << err << " of " << scale
              << "\n";
    EXPECT_LE(err, rel * scale) << label << " " << loop[i].first;
    EXPECT_FALSE(at::equal(loop[i].second, start[i].second)) << "the parameter moved: " << loop[i].first;
  }
  auto sa = a->state(), sb = b->state();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(at::allclose(sa[i].second.to(at::kDouble), sb[i].second.to(at::kDouble), 1e-5, 1e-12))
        << label << " " << sa[i].first;
  }
}

// Adafactor: two parameters of one shape (one group), a 1-D one, a 4-D one, one that starts late (its
// own step count, so its own group), in float32 (reduction order only) and bf16 (one rounding apart).
TEST(Adafactor, BatchedMatchesPerTensorLoop) {
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    auto params_with_twin = [&] {
      NamedTensors p = make_params(dtype);
      p.push_back({"twin.weight", (at::randn({4, 6}) * 0.5).to(dtype).requires_grad_(true)});  // shape of down.weight
      return p;
    };
    auto make = [](const NamedTensors& params, bool batched) {
      AdafactorOptions o;
      o.lr = 5e-2;
      o.batched = batched;
      return make_adafactor(params, o);
    };
    expect_multi_tensor_matches_loop(make, params_with_twin, dtype == at::kFloat ? 1e-6 : 8e-3,
                                     std::string("adafactor ") + c10::toString(dtype));
  }
}

// AdamW: ATen's fused kernel (it has a CPU version too) against LibTorch's per-tensor loop.
TEST(AdamW, FusedKernelMatchesPerTensorLoop) {
  auto make = [](const NamedTensors& params, bool fused) {
    AdamWOptions o;
    o.lr = 5e-2;
    o.fused = fused;
    return make_adamw(params, o);
  };
  // float32 rounding of ~10 differently ordered operations
  expect_multi_tensor_matches_loop(make, [] { return make_params(at::kFloat); }, 1e-6, "adamw");
}
TEST(Resume, AdafactorBitIdentical) { check_resume("adafactor", at::kFloat); }
TEST(Resume, AdafactorBf16ParamsBitIdentical) { check_resume("adafactor", at::kBFloat16); }

TEST(State, LayoutAndNames) {
  NamedTensors params = make_params(at::kFloat);
  auto af = make_adafactor(params, AdafactorOptions{});
  EXPECT_TRUE(af->state().empty());  // nothing stepped yet
  set_grads(params, 0);              // late.weight has no gradient at step 0
  af->step();
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& [n, t] : af->state()) got[n] = t.sizes().vec();
  const std::map<std::string, std::vector<int64_t>> want = {
      {"step.down.bias", {}},           {"exp_avg_sq.down.bias", {5}},
      {"step.down.weight", {}},         {"exp_avg_sq_row.down.weight", {4}},
      {"exp_avg_sq_col.down.weight", {6}}, {"step.conv.weight", {}},
      {"exp_avg_sq_row.conv.weight", {3, 2, 3}}, {"exp_avg_sq_col.conv.weight", {3, 2, 3}}};
  EXPECT_EQ(got, want);

  auto aw = make_adamw(params, AdamWOptions{});
  aw->step();
  for (const auto& [n, t] : aw->state()) {
    if (n.rfind("step.", 0) == 0) {
      EXPECT_EQ(t.scalar_type(), at::kLong);
      EXPECT_EQ(t.item<int64_t>(), 1);
    }
  }
  EXPECT_EQ(aw->state().size(), 9u);
}

TEST(State, Bf16ParamsKeepFloat32State) {
  // One step on bf16 weights equals the float32 computation on the same values, rounded once to bf16.
  at::manual_seed(3);
  at::Tensor w16 = at::randn({4, 5}).to(at::kBFloat16), g16 = at::randn({4, 5}).to(at::kBFloat16);
  at::Tensor w32 = w16.to(at::kFloat);
  auto a = make_adafactor({{"w", w16}}, AdafactorOptions{});
  auto b = make_adafactor({{"w", w32}}, AdafactorOptions{});
  w16.mutable_grad() = g16;
  w32.mutable_grad() = g16.to(at::kFloat);
  a->step();
  b->step();
  EXPECT_EQ(w16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(w16, w32.to(at::kBFloat16)));
  for (const auto& [n, t] : a->state()) {
    if (n.rfind("step.", 0) != 0) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << n;
    }
  }
}

TEST(State, LoadRefusesMismatches) {
  NamedTensors params = make_params(at::kFloat);
  set_grads(params, 5);
  auto aw = make_adamw(params, AdamWOptions{});
  aw->step();
  auto af = make_adafactor(params, AdafactorOptions{});
  // AdamW state into Adafactor: every moment name is foreign.
  expect_throw_containing([&] { af->load_state(aw->state()); },
                          {"unexpected state entry 'exp_avg.down.bias'", "HINT", "adafactor"});
  NamedTensors st = aw->state();
  for (auto& [n, t] : st)
    if (n == "exp_avg.down.weight") t = at::zeros({6, 4});
  st.emplace_back("exp_avg.up.weight", at::zeros({1}));
  st.erase(std::remove_if(st.begin(), st.end(), [](auto& e) { return e.first == "exp_avg_sq.down.bias"; }), st.end());
  expect_throw_containing([&] { aw->load_state(st); },
                          {"'exp_avg.down.weight' has shape [6, 4] but the parameter needs [4, 6]",
                           "'exp_avg.up.weight' names no parameter", "missing state entry 'exp_avg_sq.down.bias'"});
  NamedTensors wrong_dtype = aw->state();
  for (auto& [n, t] : wrong_dtype)
    if (n == "exp_avg.down.bias") t = t.to(at::kBFloat16);
  expect_throw_containing([&] { aw->load_state(wrong_dtype); }, {"'exp_avg.down.bias' has dtype BFloat16"});
  // A refused load leaves the state as it was.
  auto before = aw->state();
  std::map<std::string, at::Tensor> before_map(before.begin(), before.end());
  for (const auto& [n, t] : aw->state()) EXPECT_TRUE(at::equal(t, before_map.at(n)));
}

TEST(State, BadParameters) {
  at::Tensor p = at::ones({2});
  expect_throw_containing([&] { make_adamw({{"a", p}, {"a", at::ones({2})}}, {}); }, {"'a' appears twice"});
  expect_throw_containing([&] { make_adafactor({{"a", p}, {"b", p}}, {}); }, {"'a' and 'b' are the same tensor"});
  expect_throw_containing([&] { make_adafactor({{"i", at::ones({2}, at::kLong)}}, {}); }, {"only floating-point"});
}

// ---------------------------------------------------------------- schedules

TEST(Schedule, ClosedForms) {
  const double lr = 2e-5;
  const LrSchedule c(ScheduleKind::kConstant, lr, 500, 2000);
  const LrSchedule w(ScheduleKind::kConstantWithWarmup, lr, 500, 2000);
  const LrSchedule cos(ScheduleKind::kCosine, lr, 200, 2000);
  const LrSchedule floor(ScheduleKind::kCosine, lr, 200, 2000, 0.1);
  const double pi = std::acos(-1.0);
  for (int64_t s : {0, 1, 199, 200, 201, 499, 500, 501, 1100, 1999, 2000}) {
    EXPECT_DOUBLE_EQ(c.lr_at(s), lr);
    EXPECT_DOUBLE_EQ(w.lr_at(s), lr * std::min(1.0, s / 500.0)) << s;
    const double warm = std::min(1.0, s / 200.0);
    const double progress = std::max(0.0, (s - 200) / 1800.0);
    const double half_cos = 0.5 * (1 + std::cos(pi * progress));
    EXPECT_NEAR(cos.lr_at(s), s < 200 ? lr * warm : lr * half_cos, 1e-12 * lr) << s;
    EXPECT_NEAR(floor.lr_at(s), s < 200 ? lr * warm : lr * (0.1 + 0.9 * half_cos), 1e-12 * lr) << s;
  }
  EXPECT_EQ(w.lr_at(0), 0.0);                     // diffusers: the first update of a warm-up has lr 0
  EXPECT_NEAR(floor.lr_at(2000), 0.1 * lr, 1e-18);
  EXPECT_NEAR(floor.lr_at(5000), 0.1 * lr, 1e-18);  // held at the floor past the end
  EXPECT_EQ(LrSchedule(ScheduleKind::kConstantWithWarmup, lr, 0, 10).lr_at(0), lr);
}

TEST(Schedule, FromRecipeSection) {
  const LrSchedule s = make_schedule({{"name", "cosine"}, {"warmup_steps", 10}, {"min_lr_ratio", 0.25}}, 1.0, 110);
  EXPECT_EQ(s.kind(), ScheduleKind::kCosine);
  EXPECT_EQ(s.name(), "cosine");
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.5);
  EXPECT_NEAR(s.lr_at(60), 0.25 + 0.75 * 0.5, 1e-15);
  const LrSchedule d = make_schedule(nlohmann::json::object(), 1e-3, 2000);  // schema defaults
  EXPECT_EQ(d.name(), "constant_with_warmup");
  EXPECT_EQ(d.warmup_steps(), 500);
  expect_throw_containing([] { make_schedule({{"name", "cosin"}}, 1.0, 10); }, {"schedule.name", "did you mean 'cosine'"});
  expect_throw_containing([] { make_schedule({{"warmup_step", 3}}, 1.0, 10); },
                          {"unknown key schedule.warmup_step", "did you mean 'warmup_steps'"});
  expect_throw_containing([] { make_schedule({{"name", "cosine"}, {"warmup_steps", 10}}, 1.0, 10); },
                          {"schedule.warmup_steps = 10", "below train.steps (10)"});
  expect_throw_containing([] { make_schedule({{"warmup_steps", 1.5}}, 1.0, 10); }, {"must be an integer"});
}

// ---------------------------------------------------------------- gradient clipping

TEST(GradClip, ClipsToMaxNorm) {
  at::Tensor a = at::zeros({2}), b = at::zeros({1, 1}), c = at::zeros({3});
  a.mutable_grad() = f64({3, 0}).to(at::kFloat);
  b.mutable_grad() = f64({4}).reshape({1, 1}).to(at::kFloat);  // total norm 5; c has no gradient
  const GradNormResult r = clip_grad_norm(std::vector<at::Tensor>{a, b, c}, 1.0);
  EXPECT_NEAR(r.total_norm, 5.0, 1e-6);
  EXPECT_TRUE(r.finite);
  EXPECT_TRUE(r.clipped);
  EXPECT_NEAR(r.coefficient, 1.0 / (5.0 + 1e-6), 1e-7);
  const double after = std::hypot(a.grad()[0].item<double>(), b.grad()[0][0].item<double>());
  EXPECT_NEAR(after, 1.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>() / b.grad()[0][0].item<double>(), 0.75, 1e-7);  // direction kept
}

TEST(GradClip, MixedDtypesTakeThePerTensorPath) {
  at::Tensor a = at::zeros({2}), b = at::zeros({1}, at::kDouble);
  a.mutable_grad() = f64({3, 0}).to(at::kFloat);
  b.mutable_grad() = f64({4});
  const GradNormResult r = clip_grad_norm(std::vector<at::Tensor>{a, b}, 1.0);
  EXPECT_NEAR(r.total_norm, 5.0, 1e-6);
  EXPECT_NEAR(std::hypot(a.grad()[0].item<double>(), b.grad()[0].item<double>()), 1.0, 1e-6);
  EXPECT_EQ(b.grad().scalar_type(), at::kDouble);
}

TEST(GradClip, BelowMaxNormAndDisabled) {
  at::Tensor a = at::zeros({2});
  a.mutable_grad() = at::full({2}, 0.5);
  GradNormResult r = clip_grad_norm(NamedTensors{{"a", a}}, 1.0);
  EXPECT_FALSE(r.clipped);
  EXPECT_NEAR(r.total_norm, std::sqrt(0.5), 1e-7);
  a.mutable_grad() = at::full({2}, 50.0);
  r = clip_grad_norm(NamedTensors{{"a", a}}, 0.0);  // 0 disables clipping but still measures
  EXPECT_FALSE(r.clipped);
  EXPECT_NEAR(r.total_norm, std::sqrt(5000.0), 1e-3);
  EXPECT_TRUE(at::equal(a.grad(), at::full({2}, 50.0)));
}

TEST(GradClip, NonFiniteIsReportedNotApplied) {
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    at::Tensor a = at::zeros({2}), b = at::zeros({2});
    a.mutable_grad() = f64({1, bad}).to(at::kFloat);
    b.mutable_grad() = at::full({2}, 100.0);
    const GradNormResult r = clip_grad_norm(std::vector<at::Tensor>{a, b}, 1.0);
    EXPECT_FALSE(r.finite);
    EXPECT_FALSE(r.clipped);
    EXPECT_FALSE(std::isfinite(r.total_norm));
    EXPECT_TRUE(at::equal(b.grad(), at::full({2}, 100.0)));  // untouched: the trainer applies nan_policy
  }
}

// ---------------------------------------------------------------- EMA

TEST(Ema, DiffusersDecayClosedForm) {
  // A parameter that moves by +1 per step, shadow tracked in double with d_1 = 0, d_n = min(decay, n/(n+9)).
  at::Tensor p = at::zeros({3});
  Ema ema({{"w", p}}, 0.8);
  double shadow = 0;
  for (int n = 1; n <= 30; ++n) {
    p.add_(1.0);
    ema.update();
    const double d = n == 1 ? 0.0 : std::min(0.8, n / (n + 9.0));
    EXPECT_DOUBLE_EQ(ema.decay_at(n), d);
    shadow = d * shadow + (1 - d) * n;
    EXPECT_NEAR(ema.shadow()[0].second[1].item<double>(), shadow, 1e-5 * n) << n;
  }
  EXPECT_EQ(ema.num_updates(), 30);
  Ema plain({{"w", at::zeros({1})}}, 0.9, /*warmup=*/false);
  EXPECT_DOUBLE_EQ(plain.decay_at(1), 0.9);
}

TEST(Ema, ApplyRestoreAndState) {
  at::manual_seed(1);
  at::Tensor w = at::randn({4, 3}).to(at::kBFloat16);
  Ema ema({{"w", w}}, 0.99);
  EXPECT_EQ(ema.shadow()[0].second.scalar_type(), at::kFloat);
  for (int i = 0; i < 5; ++i) {
    w.add_(at::randn({4, 3}).to(at::kBFloat16));
    ema.update();
  }
  const at::Tensor training = w.clone();
  {
    EmaScope scope(ema);
    EXPECT_TRUE(at::equal(w, ema.shadow()[0].second.to(at::kBFloat16)));
    EXPECT_THROW(ema.update(), OptimError);
  }
  EXPECT_TRUE(at::equal(w, training));  // bit-exact restore

  // Save, load into a fresh EMA, continue: bit-identical to continuing the original.
  NamedTensors st;
  for (const auto& [n, t] : ema.state()) st.emplace_back(n, t.clone());
  Ema other({{"w", w}}, 0.99);
  other.load_state(st);
  EXPECT_EQ(other.num_updates(), 5);
  w.add_(1.0);
  ema.update();
  other.update();
  EXPECT_TRUE(at::equal(ema.shadow()[0].second, other.shadow()[0].second));
  expect_throw_containing([&] { other.load_state({{"ema.w", at::zeros({4, 3})}}); }, {"missing state entry 'ema_step'"});
  expect_throw_containing([] { Ema bad({{"w", at::zeros({1})}}, 1.0); }, {"train.ema_decay"});
}

// ---------------------------------------------------------------- factory

TEST(Factory, FromRecipeSection) {
  NamedTensors params = {{"w", at::ones({2, 2})}};
  auto a = make_optimizer({{"name", "adafactor"}, {"lr", 1e-3}, {"weight_decay", 0}}, params);
  EXPECT_EQ(a->name(), "adafactor");
  EXPECT_DOUBLE_EQ(a->lr(), 1e-3);
  auto d = make_optimizer(nlohmann::json::object(), params);  // schema defaults: AdamW, lr 2.048e-5
  EXPECT_EQ(d->name(), "adamw");
  EXPECT_DOUBLE_EQ(d->lr(), 2.048e-5);
  expect_throw_containing([&] { make_optimizer({{"name", "adam"}}, params); },
                          {"optim.name = \"adam\" is not one of", "did you mean 'adamw'", "HINT"});
  expect_throw_containing([&] { make_optimizer({{"lr", -1.0}, {"beta2", 1.0}, {"adafactor_decay_rat", 0}}, params); },
                          {"optim.lr = -1 is out of range", "optim.beta2 = 1 is out of range",
                           "unknown key optim.adafactor_decay_rat", "3 problems"});
  expect_throw_containing([&] { make_optimizer({{"name", "adafactor"}, {"adafactor_decay_rate", 0.5}}, params); },
                          {"optim.adafactor_decay_rate = 0.5", "in [-1, 0]"});
  expect_throw_containing([&] { make_optimizer({{"lr", "fast"}}, params); }, {"optim.lr must be a number"});
  // multi_tensor: auto = the per-tensor loops on the CPU; on/off force it; anything else is named.
  EXPECT_FALSE(d->multi_tensor());
  EXPECT_FALSE(a->multi_tensor());
  EXPECT_TRUE(make_optimizer({{"multi_tensor", "on"}}, params)->multi_tensor());
  EXPECT_TRUE(make_optimizer({{"name", "adafactor"}, {"multi_tensor", "on"}}, params)->multi_tensor());
  EXPECT_FALSE(make_optimizer({{"name", "adafactor"}, {"multi_tensor", "off"}}, params)->multi_tensor());
  expect_throw_containing([&] { make_optimizer({{"multi_tensor", "yes"}}, params); },
                          {"optim.multi_tensor = \"yes\" is not one of"});
}

}  // namespace
