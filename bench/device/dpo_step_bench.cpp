// One Diffusion-DPO training step of prefdiff, timed: random-weight UNet (any diffusers config), policy in
// float32 under bf16 autocast, frozen reference held in bf16, DpoStep (shared t and noise, fp32 MSE, the
// dpo plugin through the C ABI, surrogate backward), gradient clipping (AdamW only, as the official script),
// optimizer step. Prints one JSON object (last line of stdout) with step times, pairs/s and peak memory;
// FLOPs and MFU are added by bench/device/report.py from the FLOP count and the measured matmul ceiling.
//
//   dpo_step_bench --config CONFIG_JSON --latent 64 --pairs 8 --optimizer adamw|adafactor
//                  [--checkpointing 0|1] [--activation-budget-gb G] [--channels-last 0|1] [--device cuda|cpu]
//                  [--autocast bfloat16|none] [--ref-dtype bfloat16|float32] [--ctx-len 77] [--warmup 3]
//                  [--steps 10] [--profile-steps 2] [--multi-tensor auto|on|off] [--adafactor fused|batched|loop]
//                  [--overlap 0|1] [--out FILE.json]
//
//   --checkpointing 1          every checkpointing unit (each resnet, transformer input part and transformer layer)
//   --activation-budget-gb G   selective checkpointing: only the units the estimate needs to fit G GiB
//   --adafactor                fused CUDA kernels (default where compiled), the batched ATen update, or the
//                              per-tensor loop ([optim] multi_tensor = "off")
//   --overlap 1                gradient all-reduce overlapped with backward (GradientBuckets) through a one-rank
//                              group (NCCL on CUDA, Gloo on the CPU): what the hooks and collectives cost
//
// The JSON also holds the checkpointing choice, the memory at each phase of the profile steps (c10's caching
// allocator: allocated before the step, peak in forward+backward, after it, peak in the optimizer), and on CUDA
// the SDPA kernel each attention shape takes in bf16.
// On CUDA out-of-memory the case is retried with half the pairs (reported as "pairs" and "oom_retries").
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>
#ifdef PREFDIFF_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#endif

#include "prefdiff/backbone.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/optim/grad_clip.hpp"
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/torch_host/distributed.hpp"
#include "prefdiff/torch_host/gradient_buckets.hpp"
#include "prefdiff/train/dpo_step.hpp"
#include "prefdiff/unet2d/config.hpp"
#include "prefdiff/unet2d/sdpa_backend.hpp"

using namespace prefdiff;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string config, optimizer = "adamw", device = "cuda", autocast = "bfloat16", ref_dtype = "bfloat16", out;
  std::string multi_tensor = "auto";  // [optim] multi_tensor
  std::string adafactor = "fused";    // fused | batched | loop
  int64_t latent = 64, pairs = 8, ctx_len = 77;
  bool checkpointing = false, channels_last = false, overlap = false;
  double activation_budget_gb = 0;  // > 0: selective checkpointing
  int warmup = 3, steps = 10, profile_steps = 2;
};

Args parse(int argc, char** argv) {
  Args a;
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc) throw std::invalid_argument("bad argument '" + k + "' (see the file header)");
    kv[k.substr(2)] = argv[++i];
  }
  auto take = [&](const char* k, auto& v) {
    auto it = kv.find(k);
    if (it == kv.end()) return;
    using T = std::decay_t<decltype(v)>;
    if constexpr (std::is_same_v<T, std::string>) v = it->second;
    else if constexpr (std::is_same_v<T, bool>) v = it->second == "1" || it->second == "true";
    else if constexpr (std::is_same_v<T, double>) v = std::stod(it->second);
    else v = static_cast<T>(std::stoll(it->second));
    kv.erase(it);
  };
  take("config", a.config); take("optimizer", a.optimizer); take("device", a.device); take("autocast", a.autocast);
  take("ref-dtype", a.ref_dtype); take("out", a.out); take("latent", a.latent); take("pairs", a.pairs);
  take("ctx-len", a.ctx_len); take("checkpointing", a.checkpointing); take("channels-last", a.channels_last);
  take("warmup", a.warmup); take("steps", a.steps); take("profile-steps", a.profile_steps);
  take("multi-tensor", a.multi_tensor); take("adafactor", a.adafactor); take("overlap", a.overlap);
  take("activation-budget-gb", a.activation_budget_gb);
  if (a.adafactor != "fused" && a.adafactor != "batched" && a.adafactor != "loop")
    throw std::invalid_argument("--adafactor " + a.adafactor + ": expected fused, batched or loop");
  if (!kv.empty()) throw std::invalid_argument("unknown option --" + kv.begin()->first);
  if (a.config.empty()) throw std::invalid_argument("--config is required");
  return a;
}

c10::ScalarType dtype_of(const std::string& s) {
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float32") return at::kFloat;
  throw std::invalid_argument("dtype '" + s + "': expected bfloat16 or float32");
}

void sync(const c10::Device& d) {
#ifdef PREFDIFF_WITH_CUDA
  if (d.is_cuda()) torch::cuda::synchronize(d.index() < 0 ? 0 : d.index());
#endif
  (void)d;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// The caching allocator's bytes now, and its peak since the last reset (0 off CUDA).
struct Mem {
  double allocated = 0, peak = 0;
};
Mem memory(const c10::Device& d, bool reset_peak_after = false) {
  Mem m;
#ifdef PREFDIFF_WITH_CUDA
  if (d.is_cuda()) {
    const c10::DeviceIndex di = d.index() < 0 ? 0 : d.index();
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(di);
    m.allocated = static_cast<double>(stats.allocated_bytes[0].current);  // [0]: StatType::AGGREGATE
    m.peak = static_cast<double>(stats.allocated_bytes[0].peak);
    if (reset_peak_after) c10::cuda::CUDACachingAllocator::resetPeakStats(di);
  }
#endif
  (void)d;
  (void)reset_peak_after;
  return m;
}

double peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

nlohmann::json run_case(const Args& a, const nlohmann::json& config, int64_t pairs) {
  const c10::Device device(a.device);
  torch::manual_seed(0);
  BackboneOptions options;
  options.device = device;
  auto t0 = Clock::now();
  auto policy = BackboneRegistry::instance().create("unet2d", config, options);
  auto reference = BackboneRegistry::instance().create("unet2d", config, options);
  {
    torch::NoGradGuard no_grad;  // the reference starts equal to the policy, as with pretrained weights
    auto dst = reference->named_parameters();
    auto src = policy->named_parameters();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second.copy_(src[i].second);
  }
  // As the trainer sets a run up (framework/src/train/trainer.cpp).
  reference->set_requires_grad(false);
  reference->train(false);
  policy->train(true);
  reference->to(device, dtype_of(a.ref_dtype));
  if (a.autocast != "none") policy->set_autocast(dtype_of(a.autocast));
  if (a.channels_last) {
    policy->set_channels_last(true);
    reference->set_channels_last(true);
  }
  policy->set_gradient_checkpointing(a.checkpointing);
  if (a.activation_budget_gb > 0) policy->set_activation_budget(a.activation_budget_gb * 1024.0 * 1024.0 * 1024.0);
  sync(device);
  const double build_s = std::chrono::duration<double>(Clock::now() - t0).count();

  int64_t n_params = 0;
  const auto named = policy->named_parameters();
  std::vector<at::Tensor> params;
  for (const auto& [n, p] : named) {
    n_params += p.numel();
    params.push_back(p);
  }
  nlohmann::json optim{{"name", a.optimizer}, {"lr", 1e-8}, {"beta1", 0.9}, {"beta2", 0.999}, {"weight_decay", 1e-2},
                       {"eps", 1e-8}, {"adafactor_eps1", 1e-30}, {"adafactor_eps2", 1e-3},
                       {"adafactor_clip_threshold", 1.0}, {"adafactor_decay_rate", -0.8},
                       {"multi_tensor", a.multi_tensor}};
  std::unique_ptr<optim::Optimizer> optimizer;
  if (a.optimizer == "adafactor") {
    optim::AdafactorOptions o;
    o.lr = 1e-8;
    o.weight_decay = 1e-2;
    o.batched = a.adafactor != "loop";
    if (a.adafactor == "batched") o.fused = false;  // "fused": the kernels where they apply (CUDA float32)
    optimizer = optim::make_adafactor(named, o);
  } else {
    optimizer = optim::make_optimizer(optim, named);
  }
  // Gradient all-reduce overlapped with backward, through a one-rank group: the hooks, the bucket copies and the
  // collectives run as with several ranks, minus the wire time.
  std::unique_ptr<DataParallelGroup> group;
  std::unique_ptr<GradientBuckets> buckets;
  if (a.overlap) {
    DistributedEnv env;
    env.master_port = free_port();
    group = std::make_unique<DataParallelGroup>(env, device.is_cuda() ? "nccl" : "gloo", 600.0,
                                                /*one_rank_collectives=*/true);
    buckets = std::make_unique<GradientBuckets>(*group, named);
  }

  PluginRegistry registry;
  registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  ObjectiveSet objectives(nlohmann::json::array({{{"id", "dpo"}, {"beta", 5000.0}}}), registry);
  diffusion::NoiseSchedule schedule;
  DpoStep step(*policy, *reference, schedule, objectives);

  const int64_t channels = config.value("in_channels", 4);
  auto xdim_json = config.at("cross_attention_dim");
  const int64_t xdim = xdim_json.is_array() ? xdim_json.back().get<int64_t>() : xdim_json.get<int64_t>();
  const auto fopt = torch::TensorOptions().device(device).dtype(torch::kFloat32);
  // Fresh random data each step (the trainer feeds new latents every step); drawn outside the timed region.
  auto make_batch = [&] {
    DpoBatch b;
    b.latents_w = torch::randn({pairs, channels, a.latent, a.latent}, fopt);
    b.latents_l = torch::randn({pairs, channels, a.latent, a.latent}, fopt);
    b.noise = torch::randn({pairs, channels, a.latent, a.latent}, fopt);
    b.encoder_hidden_states = torch::randn({pairs, a.ctx_len, xdim}, fopt);
    b.timesteps = torch::randint(0, 1000, {pairs}, torch::TensorOptions().device(device).dtype(torch::kLong));
    if (policy->requires_added_conditions()) {
      const int64_t time_dim = config.value("addition_time_embed_dim", 256);
      const int64_t pooled = config.value("projection_class_embeddings_input_dim", 2816) - 6 * time_dim;
      const double px = 8.0 * static_cast<double>(a.latent);  // SDXL time_ids: size, crop, target size
      b.added = AddedConditions{torch::randn({pairs, pooled}, fopt),
                                torch::tensor({px, px, 0.0, 0.0, px, px}, fopt).repeat({pairs, 1})};
    }
    return b;
  };

#ifdef PREFDIFF_WITH_CUDA
  const c10::DeviceIndex di = device.is_cuda() ? (device.index() < 0 ? 0 : device.index()) : 0;
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(di);
#endif
  std::vector<double> times;
  double last_loss = 0.0, last_norm = 0.0;
  for (int i = 0; i < a.warmup + a.steps; ++i) {
    const DpoBatch batch = make_batch();
    sync(device);
    const auto s0 = Clock::now();
    optimizer->zero_grad();
    if (buckets) buckets->prepare(/*sync=*/true);
    const DpoStepResult r = step.train(batch, 1.0 / static_cast<double>(pairs), i, static_cast<uint64_t>(pairs));
    if (buckets) buckets->finish();
    if (a.optimizer == "adamw") last_norm = optim::clip_grad_norm(params, 1.0).total_norm;
    optimizer->step();
    sync(device);
    const double dt = std::chrono::duration<double>(Clock::now() - s0).count();
    last_loss = r.loss;
    if (i >= a.warmup) times.push_back(dt);
    std::fprintf(stderr, "  [prefdiff] step %d/%d %.1f ms loss %.4f%s\n", i + 1, a.warmup + a.steps, dt * 1e3, r.loss,
                 i < a.warmup ? " (warm-up)" : "");
  }
  std::vector<double> sorted = times;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];

  // Where a step's time goes: a few more steps with a device sync between the phases (kept out of the
  // timed steps above, whose phases overlap on the device as in training). Median per phase.
  std::map<std::string, std::vector<double>> phases;
  std::map<std::string, double> mem;  // bytes, the largest over the profile steps
  auto note = [&mem](const char* name, double v) { mem[name] = std::max(mem[name], v); };
  for (int i = 0; i < a.profile_steps; ++i) {
    const DpoBatch batch = make_batch();
    sync(device);
    auto mark = Clock::now();
    auto lap = [&](const char* name) {
      sync(device);
      const auto now = Clock::now();
      phases[name].push_back(std::chrono::duration<double>(now - mark).count());
      mark = now;
    };
    optimizer->zero_grad();
    note("allocated_before_step", memory(device, /*reset_peak_after=*/true).allocated);
    if (buckets) buckets->prepare(/*sync=*/true);
    step.train(batch, 1.0 / static_cast<double>(pairs), a.warmup + a.steps + i, static_cast<uint64_t>(pairs));
    lap("forward_backward");
    if (buckets) {
      buckets->finish();
      lap("gradient_all_reduce_finish");
    }
    const Mem fb = memory(device, true);
    note("peak_forward_backward", fb.peak);
    note("allocated_after_backward", fb.allocated);
    if (a.optimizer == "adamw") optim::clip_grad_norm(params, 1.0);
    lap("grad_clip");
    optimizer->step();
    lap("optimizer");
    const Mem op = memory(device, true);
    note("peak_optimizer", op.peak);
    note("allocated_after_optimizer", op.allocated);
  }
  nlohmann::json phase_s = nlohmann::json::object();
  for (auto& [name, v] : phases) {
    std::sort(v.begin(), v.end());
    phase_s[name] = v[v.size() / 2];
  }

  nlohmann::json out{{"impl", "prefdiff"}, {"device", device.str()}, {"pairs", pairs}, {"images_per_step", 2 * pairs},
                     {"latent", a.latent}, {"ctx_len", a.ctx_len}, {"optimizer", a.optimizer},
                     {"checkpointing", a.checkpointing}, {"channels_last", a.channels_last},
                     {"autocast", a.autocast}, {"ref_dtype", a.ref_dtype}, {"parameters", n_params},
                     {"build_s", build_s}, {"step_times_s", times}, {"median_step_s", median},
                     {"pairs_per_s", static_cast<double>(pairs) / median}, {"last_loss", last_loss},
                     {"last_grad_norm", last_norm}, {"threads", at::get_num_threads()}, {"phase_s", phase_s},
                     {"multi_tensor", optimizer->multi_tensor()},
                     {"adafactor", a.optimizer == "adafactor" ? a.adafactor : ""},
                     {"activation_budget_gb", a.activation_budget_gb},
                     {"checkpointing_choice", policy->checkpointing_summary()},
                     {"overlap", a.overlap}, {"memory_phases_bytes", mem}};
  out["checkpointing_choice"].erase("names");  // the count is enough here; the list is long for SDXL
  if (buckets) {
    out["gradient_buckets"] = {{"buckets", buckets->layout().size()},
                               {"launched_during_backward", buckets->launched_during_backward()},
                               {"launched_by_finish", buckets->launched_by_finish()},
                               {"rebuilt_by_arrival", buckets->rebuilt()},
                               {"backend", group->backend()}};
  }
  if (device.is_cuda()) {
    // The SDPA kernel each attention shape of this policy forward takes in bf16 (autocast's dtype).
    nlohmann::json calls = nlohmann::json::array();
    const auto ucfg = unet2d::Unet2dConfig::from_json(config);
    for (const auto& c : unet2d::attention_backends(ucfg, {2 * pairs, a.latent, a.latent, a.ctx_len}, at::kBFloat16, device))
      calls.push_back({{"kind", c.kind}, {"batch", c.batch}, {"heads", c.heads}, {"q_len", c.q_len},
                       {"kv_len", c.kv_len}, {"head_dim", c.head_dim}, {"calls", c.calls}, {"backend", c.backend}});
    out["sdpa"] = calls;
  }
#ifdef PREFDIFF_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(di);
    const size_t agg = 0;  // StatType::AGGREGATE (the enum's header moved between LibTorch releases)
    out["peak_allocated_bytes"] = stats.allocated_bytes[agg].peak;
    out["peak_reserved_bytes"] = stats.reserved_bytes[agg].peak;
  }
#endif
  out["peak_rss_bytes"] = peak_rss_bytes();
  return out;
}

bool is_oom(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) return true;
  return std::string(e.what()).find("out of memory") != std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    nlohmann::json config;
    std::ifstream in(a.config);
    if (!in) throw std::runtime_error("cannot read " + a.config);
    in >> config;
    int64_t pairs = a.pairs;
    int retries = 0;
    nlohmann::json result;
    for (;;) {
      try {
        result = run_case(a, config, pairs);
        break;
      } catch (const std::exception& e) {
        if (!is_oom(e) || pairs <= 1) throw;
        std::fprintf(stderr, "  [prefdiff] out of memory with %lld pairs; retrying with %lld\n",
                     static_cast<long long>(pairs), static_cast<long long>(pairs / 2));
#ifdef PREFDIFF_WITH_CUDA
        c10::cuda::CUDACachingAllocator::emptyCache();
#endif
        pairs /= 2;
        ++retries;
      }
    }
    result["config"] = a.config;
    result["oom_retries"] = retries;
    result["requested_pairs"] = a.pairs;
    const std::string text = result.dump();
    if (!a.out.empty()) std::ofstream(a.out) << text << "\n";
    std::printf("%s\n", text.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpo_step_bench: error: %s\n", e.what());
    return 1;
  }
}
