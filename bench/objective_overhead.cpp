// Cost of the objective plugin call against a tiny-UNet Diffusion-DPO training step, measured side by
// side in one process (issue: plugin call < 0.5% of a step).
//
//   objective_overhead CONFIG_JSON [pairs=4096] [step_pairs=4] [repeats=9]
//
// The step is what the trainer does per micro-batch: policy forward + backward and frozen-reference
// forward on winner and loser latents with shared t and noise, per-image fp32 MSE, the four vectors to
// the host as doubles, the objective, the surrogate backward, and an AdamW step.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <torch/torch.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/host/objective_set.hpp"

using namespace prefdiff;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double median_seconds(int repeats, F&& body) {
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    body();
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  return median(times);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: objective_overhead CONFIG_JSON [pairs=4096] [step_pairs=4] [repeats=9]\n");
    return 2;
  }
  const int64_t pairs = argc > 2 ? std::stoll(argv[2]) : 4096;
  const int64_t step_pairs = argc > 3 ? std::stoll(argv[3]) : 4;
  const int repeats = argc > 4 ? std::stoi(argv[4]) : 9;
  torch::manual_seed(0);

  nlohmann::json config;
  std::ifstream(argv[1]) >> config;
  auto policy = BackboneRegistry::instance().create("unet2d", config);
  auto reference = BackboneRegistry::instance().create("unet2d", config);
  reference->set_requires_grad(false);
  policy->train(true);
  torch::optim::AdamW optimizer(policy->module().parameters(), torch::optim::AdamWOptions(1e-5));

  PluginRegistry registry;
  registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  const std::vector<std::string> ids = {"dpo", "cdpo", "rdpo", "holder-dpo", "alpha-dpo"};
  ObjectiveSet step_objective(nlohmann::json::array({{{"id", "dpo"}}}), registry);

  const int64_t size = config.value("sample_size", 32), channels = config.value("in_channels", 4);
  const int64_t text_dim = config.value("cross_attention_dim", 32);
  const auto x0 = torch::randn({2 * step_pairs, channels, size, size});
  const auto text = torch::randn({2 * step_pairs, 8, text_dim});
  auto step = [&] {
    const auto t = torch::randint(0, 1000, {step_pairs}, torch::kLong).repeat({2});
    const auto noise = torch::randn({step_pairs, channels, size, size}).repeat({2, 1, 1, 1});  // shared by w and l
    const auto noisy = x0 + noise;  // the schedule's scaling does not change the cost
    const auto mse = (policy->forward(noisy, t, text) - noise).pow(2).mean({1, 2, 3});
    torch::Tensor ref_mse;
    {
      torch::NoGradGuard no_grad;
      ref_mse = (reference->forward(noisy, t, text) - noise).pow(2).mean({1, 2, 3});
    }
    const auto host = torch::stack({mse.detach(), ref_mse}).to(torch::kFloat64).contiguous();
    const double* h = host.data_ptr<double>();
    ObjectiveInputs in;
    in.model_w.assign(h, h + step_pairs);
    in.model_l.assign(h + step_pairs, h + 2 * step_pairs);
    in.ref_w.assign(h + 2 * step_pairs, h + 3 * step_pairs);
    in.ref_l.assign(h + 3 * step_pairs, h + 4 * step_pairs);
    ObjectiveOutputs out;
    step_objective.evaluate(in, out);
    std::vector<double> g(out.dloss_dmodel_w);
    g.insert(g.end(), out.dloss_dmodel_l.begin(), out.dloss_dmodel_l.end());
    const auto grads = torch::tensor(g, torch::kFloat64).to(torch::kFloat32) / static_cast<double>(step_pairs);
    optimizer.zero_grad();
    (grads * mse).sum().backward();
    optimizer.step();
  };
  step();  // warm-up
  const double step_s = median_seconds(repeats, step);

  // The plugin call the host makes per micro-batch, at `pairs` pairs (host vectors in, host vectors out).
  ObjectiveInputs big;
  for (int64_t i = 0; i < pairs; ++i) {
    const double h = -40.0 + 80.0 * static_cast<double>(i) / static_cast<double>(pairs);
    big.model_w.push_back(0.1 - h / 5000.0);
    big.model_l.push_back(0.1);
    big.ref_w.push_back(0.1);
    big.ref_l.push_back(0.1);
  }
  std::printf("tiny-UNet DPO step (%lld pairs, %lldx%lld latents, %d threads): median %.3f ms over %d\n",
              static_cast<long long>(step_pairs), static_cast<long long>(size), static_cast<long long>(size),
              at::get_num_threads(), step_s * 1e3, repeats);
  std::printf("%-12s %14s %16s\n", "objective", "call (us)", "fraction of step");
  double total = 0.0;
  for (const std::string& id : ids) {
    ObjectiveSet objective(nlohmann::json::array({{{"id", id}}}), registry);
    ObjectiveOutputs out;
    objective.evaluate(big, out);
    const double call_s = median_seconds(51, [&] { objective.evaluate(big, out); });
    total += call_s;
    std::printf("%-12s %14.1f %15.4f%%\n", id.c_str(), call_s * 1e6, 100.0 * call_s / step_s);
  }
  std::printf("%-12s %14.1f %15.4f%%   (target < 0.5%% each)\n", "all five", total * 1e6, 100.0 * total / step_s);
  return 0;
}
