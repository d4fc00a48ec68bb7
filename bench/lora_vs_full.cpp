// A LoRA DPO step against a full fine-tuning DPO step on the same tiny UNet (issue 16: step time and peak
// memory, LoRA vs full, on CPU at tiny size). Timing: both in one process, interleaved ABBA, same inputs,
// medians. Memory: each mode in its own forked child (started before any model exists), peak RSS growth
// over the child's start (models, gradients, optimizer state, activations).
//
//   lora_vs_full CONFIG_JSON [pairs=4] [repeats=15] [rank=8]
//
// full: policy + frozen reference copy, AdamW over every UNet parameter.
// LoRA: one UNet with rank-r adapters on to_q/to_k/to_v/to_out.0, the reference = adapters off, AdamW over
//       the adapters (prefdiff's AdaptersOffReference, as training uses it).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

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
#include "prefdiff/train/adapters_off_reference.hpp"
#include "prefdiff/train/dpo_step.hpp"

using namespace prefdiff;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kb() {  // current resident set (kB)
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

struct Mode {
  std::unique_ptr<Backbone> policy, reference;
  std::unique_ptr<optim::Optimizer> optimizer;
  std::vector<at::Tensor> params;
  std::unique_ptr<DpoStep> step;
};

Mode make_mode(bool lora, const nlohmann::json& config, int64_t rank, const diffusion::NoiseSchedule& schedule,
               ObjectiveSet& objectives) {
  Mode m;
  torch::manual_seed(0);
  m.policy = BackboneRegistry::instance().create("unet2d", config);
  if (lora) {
    m.policy->set_requires_grad(false);
    LoraOptions o;
    o.rank = rank;
    o.alpha = static_cast<double>(rank);
    m.policy->add_lora(o);
    m.reference = std::make_unique<AdaptersOffReference>(*m.policy);
  } else {
    torch::manual_seed(0);
    m.reference = BackboneRegistry::instance().create("unet2d", config);
    m.reference->set_requires_grad(false);
  }
  const auto named = lora ? m.policy->lora_parameters() : m.policy->named_parameters();
  for (const auto& [n, p] : named) m.params.push_back(p);
  m.optimizer = optim::make_optimizer(
      nlohmann::json{{"name", "adamw"}, {"lr", 1e-5}, {"beta1", 0.9}, {"beta2", 0.999}, {"weight_decay", 1e-2}, {"eps", 1e-8},
                     {"adafactor_eps1", 1e-30}, {"adafactor_eps2", 1e-3}, {"adafactor_clip_threshold", 1.0},
                     {"adafactor_decay_rate", -0.8}, {"multi_tensor", "off"}},
      named);
  m.step = std::make_unique<DpoStep>(*m.policy, *m.reference, schedule, objectives);
  return m;
}

void train_step(Mode& m, const DpoBatch& batch, int64_t pairs) {
  m.optimizer->zero_grad();
  m.step->train(batch, 1.0 / static_cast<double>(pairs), 0, static_cast<uint64_t>(pairs));
  optim::clip_grad_norm(m.params, 1.0);
  m.optimizer->step();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: lora_vs_full CONFIG_JSON [pairs=4] [repeats=15] [rank=8]\n");
    return 2;
  }
  const int64_t pairs = argc > 2 ? std::stoll(argv[2]) : 4;
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 15;
  const int64_t rank = argc > 4 ? std::stoll(argv[4]) : 8;
  nlohmann::json config;
  std::ifstream(argv[1]) >> config;
  diffusion::NoiseSchedule schedule;
  PluginRegistry registry;
  registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  ObjectiveSet objectives(nlohmann::json::array({{{"id", "dpo"}}}), registry);

  const int64_t size = config.value("sample_size", 32), channels = config.value("in_channels", 4);
  torch::manual_seed(1);
  DpoBatch batch;
  batch.latents_w = torch::randn({pairs, channels, size, size});
  batch.latents_l = torch::randn({pairs, channels, size, size});
  batch.encoder_hidden_states = torch::randn({pairs, 8, config.value("cross_attention_dim", 32)});
  batch.timesteps = torch::randint(0, 1000, {pairs}, torch::kLong);
  batch.noise = torch::randn({pairs, channels, size, size});

  // Peak memory: one child per mode, one after the other.
  long peak_kb[2] = {0, 0};
  for (int lora = 0; lora < 2; ++lora) {
    int fd[2];
    if (pipe(fd) != 0) return 1;
    const pid_t pid = fork();
    if (pid == 0) {
      close(fd[0]);
      const long start = rss_kb();
      Mode m = make_mode(lora == 1, config, rank, schedule, objectives);
      for (int i = 0; i < 3; ++i) train_step(m, batch, pairs);
      struct rusage usage {};
      getrusage(RUSAGE_SELF, &usage);
      const long grown = usage.ru_maxrss - start;
      if (write(fd[1], &grown, sizeof grown) != sizeof grown) _exit(1);
      _exit(0);
    }
    close(fd[1]);
    if (read(fd[0], &peak_kb[lora], sizeof(long)) != sizeof(long)) peak_kb[lora] = -1;
    close(fd[0]);
    waitpid(pid, nullptr, 0);
  }

  Mode full = make_mode(false, config, rank, schedule, objectives), lora = make_mode(true, config, rank, schedule, objectives);
  int64_t full_count = 0, lora_count = 0;
  for (const auto& p : full.params) full_count += p.numel();
  for (const auto& p : lora.params) lora_count += p.numel();
  train_step(full, batch, pairs);
  train_step(lora, batch, pairs);
  std::vector<double> a, b;
  auto time = [&](Mode& m) {
    const auto t0 = Clock::now();
    train_step(m, batch, pairs);
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  for (int i = 0; i < repeats; ++i) {  // ABBA: machine-load drifts hit both alike
    if (i % 2 == 0) {
      a.push_back(time(lora));
      b.push_back(time(full));
    } else {
      b.push_back(time(full));
      a.push_back(time(lora));
    }
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  const double ma = a[a.size() / 2], mb = b[b.size() / 2];
  std::printf("tiny-UNet DPO step, %lld pairs of %lldx%lld latents, %d threads, median of %d interleaved runs\n",
              static_cast<long long>(pairs), static_cast<long long>(size), static_cast<long long>(size),
              at::get_num_threads(), repeats);
  std::printf("  trained parameters  LoRA r=%lld %lld, full %lld\n", static_cast<long long>(rank),
              static_cast<long long>(lora_count), static_cast<long long>(full_count));
  std::printf("  step time           LoRA %8.2f ms, full %8.2f ms, LoRA/full %.3f\n", ma * 1e3, mb * 1e3, ma / mb);
  std::printf("  peak RSS growth     LoRA %8.1f MB, full %8.1f MB, LoRA/full %.3f\n", peak_kb[1] / 1024.0,
              peak_kb[0] / 1024.0, peak_kb[0] > 0 ? static_cast<double>(peak_kb[1]) / static_cast<double>(peak_kb[0]) : 0.0);
  return 0;
}
