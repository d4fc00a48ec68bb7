// prefdiff's training step against a bare LibTorch loop doing the same computation on the same tiny
// UNet (issue: framework overhead at most 3%). Both run in one process, interleaved, same inputs.
//
//   trainer_overhead CONFIG_JSON [pairs=4] [repeats=15]
//
// prefdiff: DpoStep (shared t/noise, fp32 MSE, the dpo plugin through the C ABI, surrogate backward),
// optim::clip_grad_norm, optim AdamW, metrics accumulation.
// bare:     the same forward passes, -logsigmoid(h).mean() in LibTorch, backward, clip_grad_norm_, AdamW.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <torch/torch.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/optim/grad_clip.hpp"
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/train/dpo_step.hpp"

using namespace prefdiff;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: trainer_overhead CONFIG_JSON [pairs=4] [repeats=15]\n");
    return 2;
  }
  const int64_t pairs = argc > 2 ? std::stoll(argv[2]) : 4;
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 15;
  nlohmann::json config;
  std::ifstream(argv[1]) >> config;
  torch::manual_seed(0);
  auto make = [&] { return BackboneRegistry::instance().create("unet2d", config); };
  auto policy_a = make(), policy_b = make(), reference = make();
  {
    torch::NoGradGuard no_grad;  // both policies start equal
    auto a = policy_a->named_parameters(), b = policy_b->named_parameters();
    for (size_t i = 0; i < a.size(); ++i) b[i].second.copy_(a[i].second);
  }
  reference->set_requires_grad(false);
  diffusion::NoiseSchedule schedule;

  const int64_t size = config.value("sample_size", 32), channels = config.value("in_channels", 4);
  DpoBatch batch;
  batch.latents_w = torch::randn({pairs, channels, size, size});
  batch.latents_l = torch::randn({pairs, channels, size, size});
  batch.encoder_hidden_states = torch::randn({pairs, 8, config.value("cross_attention_dim", 32)});
  batch.timesteps = torch::randint(0, 1000, {pairs}, torch::kLong);
  batch.noise = torch::randn({pairs, channels, size, size});

  // prefdiff
  PluginRegistry registry;
  registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  ObjectiveSet objectives(nlohmann::json::array({{{"id", "dpo"}}}), registry);
  DpoStep step(*policy_a, *reference, schedule, objectives);
  const auto named = policy_a->named_parameters();
  std::vector<at::Tensor> params_a;
  for (const auto& [n, p] : named) params_a.push_back(p);
  auto optimizer_a = optim::make_optimizer(
      nlohmann::json{{"name", "adamw"}, {"lr", 1e-5}, {"beta1", 0.9}, {"beta2", 0.999}, {"weight_decay", 1e-2}, {"eps", 1e-8},
                     {"adafactor_eps1", 1e-30}, {"adafactor_eps2", 1e-3}, {"adafactor_clip_threshold", 1.0},
                     {"adafactor_decay_rate", -0.8}},
      named);
  run::MetricsLogger metrics(std::filesystem::temp_directory_path() / "prefdiff_bench_metrics", run::MetricsOptions{false});
  auto prefdiff_step = [&] {
    optimizer_a->zero_grad();
    const DpoStepResult r = step.train(batch, 1.0 / static_cast<double>(pairs), 0, static_cast<uint64_t>(pairs));
    metrics.add("loss", r.loss);
    metrics.add("rewards/accuracies", r.implicit_accuracy);
    const auto norm = optim::clip_grad_norm(params_a, 1.0);
    metrics.set("grad_norm", norm.total_norm);
    optimizer_a->step();
  };

  // bare LibTorch
  std::vector<at::Tensor> params_b;
  for (const auto& [n, p] : policy_b->named_parameters()) params_b.push_back(p);
  torch::optim::AdamW optimizer_b(params_b, torch::optim::AdamWOptions(1e-5).weight_decay(1e-2));
  auto bare_step = [&] {
    optimizer_b.zero_grad();
    const auto latents = torch::cat({batch.latents_w, batch.latents_l});
    const auto noise = batch.noise.repeat({2, 1, 1, 1});
    const auto t = batch.timesteps.repeat({2});
    const auto text = batch.encoder_hidden_states.repeat({2, 1, 1});
    const auto noisy = schedule.add_noise(latents, noise, t);
    const auto mse = (policy_b->forward(noisy, t, text) - noise).pow(2).mean({1, 2, 3});
    torch::Tensor ref;
    {
      torch::NoGradGuard no_grad;
      ref = (reference->forward(noisy, t, text) - noise).pow(2).mean({1, 2, 3});
    }
    const auto m = mse.chunk(2), r = ref.chunk(2);
    const auto h = -0.5 * 5000.0 * ((m[0] - r[0]) - (m[1] - r[1]));
    const auto loss = -torch::log_sigmoid(h).mean();
    loss.backward();
    (void)loss.item<double>();  // the trainer logs it: one sync per step in both loops
    torch::nn::utils::clip_grad_norm_(params_b, 1.0);
    optimizer_b.step();
  };

  prefdiff_step();
  bare_step();
  std::vector<double> a, b;
  auto time = [](auto& step) {
    const auto t0 = Clock::now();
    step();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // Interleaved so drifts in machine load hit both alike, in alternating order (ABBA) so that neither
  // always runs right after the other's allocations.
  for (int i = 0; i < repeats; ++i) {
    if (i % 2 == 0) {
      a.push_back(time(prefdiff_step));
      b.push_back(time(bare_step));
    } else {
      b.push_back(time(bare_step));
      a.push_back(time(prefdiff_step));
    }
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double ma = a[a.size() / 2], mb = b[b.size() / 2];
  std::printf("tiny-UNet DPO step, %lld pairs of %lldx%lld latents, %d threads, median of %d interleaved runs\n",
              static_cast<long long>(pairs), static_cast<long long>(size), static_cast<long long>(size),
              at::get_num_threads(), repeats);
  std::printf("  prefdiff step   %8.2f ms\n  bare LibTorch   %8.2f ms\n  overhead        %+7.2f%%   (target <= 3%%)\n",
              ma * 1e3, mb * 1e3, 100.0 * (ma / mb - 1.0));
  return 0;
}
