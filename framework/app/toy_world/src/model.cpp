// The LibTorch side of preparing a world: reference pretraining, sampling, and the cached folders.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/nn/module.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>

#include "eval_mode.hpp"
#include "internal.hpp"
#include "prefdiff/diffusion/ddim.hpp"
#include "prefdiff/diffusion/sampler.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/toy_world/prepare.hpp"

namespace prefdiff::toy {
namespace fs = std::filesystem;

namespace {

constexpr double kGradClip = 1.0;
constexpr double kWeightDecay = 1e-2;
constexpr int64_t kQualitySamples = 32;  // per prompt, for pretrain.json
constexpr int64_t kQualitySteps = 20;

std::string fixed(double v, int digits = 4) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(digits);
  s << v;
  return s.str();
}

// Runs `fn` with the default CPU generator seeded, restoring its state afterwards: weight init draws from
// it, and the caller's own random stream must not depend on whether a world was built.
template <typename Fn>
auto with_seeded_default_generator(uint64_t seed, Fn&& fn) {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  at::Tensor saved;
  {
    // Held only around state access: the random kernels inside fn() lock the same mutex.
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved = gen.get_state();
    gen.set_current_seed(seed);
  }
  struct Restore {
    at::Generator& g;
    const at::Tensor& s;
    ~Restore() {
      std::lock_guard<std::mutex> lock(g.mutex());
      g.set_state(s);
    }
  } restore{gen, saved};
  return fn();
}

at::Tensor embeddings_tensor(const World& world, const std::vector<int64_t>& prompts, int64_t first, int64_t count,
                             const std::vector<uint8_t>* drop = nullptr) {
  const int64_t s = world.config().embed_tokens, x = world.config().embed_dim;
  at::Tensor e = at::empty({count, s, x}, at::kFloat);
  float* p = e.data_ptr<float>();
  for (int64_t i = 0; i < count; ++i) {
    const size_t index = static_cast<size_t>(first + i);
    const std::vector<float>& src =
        (drop && (*drop)[index]) ? world.null_embedding() : world.prompt_embedding(prompts[index]);
    std::copy(src.begin(), src.end(), p + i * s * x);
  }
  return e;
}

// Runs the enclosing scope with one intra-op thread: reductions and GEMMs may split work by thread count,
// and the cached reference must be the same bytes on every machine. (Also the faster choice on a busy
// 2-core machine, where two spinning OpenMP threads measured 4x slower than one.)
class SingleThread {
 public:
  SingleThread() : previous_(at::get_num_threads()) { at::set_num_threads(1); }
  ~SingleThread() { at::set_num_threads(previous_); }

 private:
  int previous_;
};

// Reference pretraining: epsilon-prediction denoising loss on fresh base samples every step, AdamW with a
// linear warm-up and cosine decay. Every draw comes from the world's counter-based generator.
nlohmann::json pretrain(Backbone& unet, const World& world) {
  const WorldConfig& c = world.config();
  const diffusion::NoiseSchedule schedule(schedule_config());
  const int64_t T = schedule.config().num_train_timesteps;
  const int64_t B = c.pretrain_batch, D = world.latent_numel();
  std::vector<at::Tensor> params;
  for (auto& kv : unet.named_parameters()) params.push_back(kv.second);
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(c.pretrain_lr).weight_decay(kWeightDecay));
  unet.train(true);
  unet.set_requires_grad(true);

  const uint64_t sample_stream = stream_id("pretrain-x0", c.pretrain_seed);
  const uint64_t eps_stream = stream_id("pretrain-eps", c.pretrain_seed);
  const CounterRng draws(c.seed, stream_id("pretrain-draws", c.pretrain_seed));
  const int64_t warmup = std::max<int64_t>(1, std::min<int64_t>(100, c.pretrain_steps / 10));
  const int64_t window = std::max<int64_t>(1, c.pretrain_steps / 20);
  nlohmann::json curve = nlohmann::json::array();
  double window_loss = 0.0, last_window = 0.0;
  const auto start = std::chrono::steady_clock::now();

  std::vector<int64_t> prompts(static_cast<size_t>(B));
  std::vector<uint8_t> drop(static_cast<size_t>(B));
  at::Tensor x0 = at::empty({B, c.latent_channels, c.latent_size, c.latent_size}, at::kFloat);
  at::Tensor eps = at::empty_like(x0);
  at::Tensor t = at::empty({B}, at::kLong);
  for (int64_t step = 0; step < c.pretrain_steps; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      const uint64_t i = static_cast<uint64_t>(step * B + b);
      const size_t bi = static_cast<size_t>(b);
      prompts[bi] = std::min<int64_t>(c.prompts - 1, static_cast<int64_t>(draws.uniform(3 * i) * static_cast<double>(c.prompts)));
      t.data_ptr<int64_t>()[b] = std::min<int64_t>(T - 1, static_cast<int64_t>(draws.uniform(3 * i + 1) * static_cast<double>(T)));
      drop[bi] = draws.uniform(3 * i + 2) < c.pretrain_caption_dropout ? 1 : 0;
      world.sample_base(prompts[bi], sample_stream, i, x0.data_ptr<float>() + b * D);
      world.standard_normal(eps_stream, i, eps.data_ptr<float>() + b * D);
    }
    const at::Tensor text = embeddings_tensor(world, prompts, 0, B, &drop);
    const at::Tensor noisy = schedule.add_noise(x0, eps, t);
    const at::Tensor pred = unet.forward(noisy, t, text);
    const at::Tensor loss = (pred - eps).pow(2).mean();

    const double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, c.pretrain_steps - warmup));
    const double lr = step < warmup ? c.pretrain_lr * static_cast<double>(step + 1) / static_cast<double>(warmup)
                                    : c.pretrain_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer.zero_grad();
    loss.backward();
    torch::nn::utils::clip_grad_norm_(params, kGradClip);
    optimizer.step();

    window_loss += loss.item<double>();
    if ((step + 1) % window == 0 || step + 1 == c.pretrain_steps) {
      const int64_t n = (step + 1) % window == 0 ? window : (step + 1) % window;
      last_window = window_loss / static_cast<double>(n);
      curve.push_back({{"step", step + 1}, {"loss", last_window}});
      window_loss = 0.0;
      if ((step + 1) % (window * 5) == 0)
        log::info("toy-world: pretraining step " + std::to_string(step + 1) + "/" + std::to_string(c.pretrain_steps) +
                  ", loss " + fixed(last_window));
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  unet.train(false);
  unet.set_requires_grad(false);
  return {{"steps", c.pretrain_steps}, {"batch", B}, {"seconds", seconds},
          {"final_loss", last_window}, {"loss_curve", curve}};
}

nlohmann::json world_summary(const World& world) {
  nlohmann::json prompts = nlohmann::json::array();
  for (int64_t k = 0; k < world.prompt_count(); ++k) {
    std::vector<double> mode_rewards;
    for (int64_t m = 0; m < world.config().modes; ++m) mode_rewards.push_back(world.reward(k, world.mode_mean(k, m).data()));
    prompts.push_back({{"prompt", k}, {"heldout", world.is_heldout(k)}, {"best_mode", world.best_mode(k)},
                       {"mode_weights", world.mode_weights(k)}, {"mode_center_rewards", mode_rewards}});
  }
  return prompts;
}

std::string default_cache_root() {
  if (const char* env = std::getenv("PREFDIFF_CACHE"); env && *env) return std::string(env);
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.cache/prefdiff";
  throw WorldError("toy-world: neither PREFDIFF_CACHE nor HOME is set; HINT: set [data] cache_dir or PREFDIFF_CACHE");
}

}  // namespace

diffusion::ScheduleConfig schedule_config() {
  diffusion::ScheduleConfig s;  // SD's training schedule: 1000 steps, scaled_linear 0.00085..0.012, epsilon
  s.steps_offset = 1;
  s.timestep_spacing = "leading";
  s.set_alpha_to_one = false;
  return s;
}

nlohmann::json reference_unet_config(const WorldConfig& config) {
  nlohmann::json j;
  if (config.unet_config.empty()) {
    j = nlohmann::json::parse(detail::kTinyUnetConfig);
  } else {
    std::ifstream in(config.unet_config);
    if (!in)
      throw WorldError("[data] unet_config = '" + config.unet_config +
                       "': cannot read the file; HINT: give a UNet config.json, or remove the key for the built-in tiny UNet");
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw WorldError("[data] unet_config = '" + config.unet_config + "': not valid JSON (" + e.what() + ")");
    }
  }
  j["in_channels"] = config.latent_channels;
  j["out_channels"] = config.latent_channels;
  j["sample_size"] = config.latent_size;
  j["cross_attention_dim"] = config.embed_dim;
  return j;
}

std::string reference_key(const WorldConfig& c) {
  // Only what shapes the base distribution and the training: the oracle and the pairs are not in it, so
  // sweeps over them reuse one reference.
  const nlohmann::json world = {{"seed", c.seed},
                                {"prompts", c.prompts},
                                {"modes", c.modes},
                                {"latent_channels", c.latent_channels},
                                {"latent_size", c.latent_size},
                                {"embed_tokens", c.embed_tokens},
                                {"embed_dim", c.embed_dim},
                                {"mode_scale", c.mode_scale},
                                {"mode_weight_spread", c.mode_weight_spread},
                                {"noise_std", c.noise_std}};
  const nlohmann::json pre = {{"steps", c.pretrain_steps}, {"batch", c.pretrain_batch}, {"lr", c.pretrain_lr},
                              {"caption_dropout", c.pretrain_caption_dropout}, {"seed", c.pretrain_seed}};
  return detail::hash_json({{"code", kCodeVersion}, {"torch", TORCH_VERSION}, {"world", world}, {"pretrain", pre},
                            {"unet", reference_unet_config(c)}, {"schedule", "sd-scaled-linear-1000"}});
}

std::string data_key(const WorldConfig& c) {
  nlohmann::json j = c.to_json();
  j.erase("cache_dir");
  j.erase("unet_config");  // its content is in the reference key
  return detail::hash_json({{"code", kCodeVersion}, {"reference", reference_key(c)}, {"world", j}});
}

fs::path cache_root(const WorldConfig& config, const PrepareOptions& options) {
  if (!options.cache_root.empty()) return options.cache_root;
  if (!config.cache_dir.empty()) return config.cache_dir;
  return fs::path(default_cache_root()) / "toy-world";
}

std::vector<float> sample_model(Backbone& model, const World& world, const std::vector<int64_t>& prompts,
                                uint64_t noise_stream, const std::vector<uint64_t>& noise_index, int64_t steps,
                                double guidance_scale, int64_t batch_size) {
  if (prompts.size() != noise_index.size())
    throw WorldError("toy-world: sample_model needs one noise index per prompt (" + std::to_string(prompts.size()) +
                     " prompts, " + std::to_string(noise_index.size()) + " indices)");
  const WorldConfig& c = world.config();
  const int64_t N = static_cast<int64_t>(prompts.size()), D = world.latent_numel();
  std::vector<float> out(static_cast<size_t>(N * D));
  torch::NoGradGuard no_grad;
  detail::EvalMode eval(model);
  diffusion::DdimScheduler scheduler(schedule_config());
  const bool guided = guidance_scale > 1.0;
  const c10::Device device = model.device();
  const c10::ScalarType dtype = model.dtype();
  for (int64_t first = 0; first < N; first += batch_size) {
    const int64_t n = std::min(batch_size, N - first);
    at::Tensor noise = at::empty({n, c.latent_channels, c.latent_size, c.latent_size}, at::kFloat);
    for (int64_t i = 0; i < n; ++i)
      world.standard_normal(noise_stream, noise_index[static_cast<size_t>(first + i)], noise.data_ptr<float>() + i * D);
    at::Tensor text = embeddings_tensor(world, prompts, first, n);
    if (guided) text = at::cat({at::zeros_like(text), text}, 0);  // [uncond; cond], the sampler's order
    text = text.to(device, dtype);
    const diffusion::Denoiser denoiser = [&](const at::Tensor& x, const at::Tensor& t) {
      return model.forward(x.to(dtype), t, text).to(at::kFloat);
    };
    diffusion::SamplerOptions options;
    options.steps = steps;
    options.guidance_scale = guidance_scale;
    const at::Tensor x = diffusion::sample_ddim(scheduler, noise.to(device), denoiser, options).to(at::kCPU).contiguous();
    std::copy(x.data_ptr<float>(), x.data_ptr<float>() + n * D, out.begin() + first * D);
  }
  return out;
}

nlohmann::json sample_quality(Backbone& model, const World& world, int64_t samples, int64_t steps, uint64_t seed) {
  const WorldConfig& c = world.config();
  std::vector<int64_t> prompts;
  std::vector<uint64_t> index;
  for (int64_t k = 0; k < c.prompts; ++k)
    for (int64_t j = 0; j < samples; ++j) {
      prompts.push_back(k);
      index.push_back((static_cast<uint64_t>(k) << 32) | static_cast<uint64_t>(j));
    }
  const std::vector<float> x = sample_model(model, world, prompts, stream_id("sample-quality", seed), index, steps, 1.0);
  const int64_t D = world.latent_numel();
  double total_sq = 0.0, total_tv = 0.0, worst_sq = 0.0;
  nlohmann::json per_prompt = nlohmann::json::array();
  for (int64_t k = 0; k < c.prompts; ++k) {
    std::vector<double> histogram(static_cast<size_t>(c.modes), 0.0);
    double sq = 0.0;
    for (int64_t j = 0; j < samples; ++j) {
      double d = 0.0;
      const int64_t m = world.nearest_mode(k, x.data() + (k * samples + j) * D, &d);
      histogram[static_cast<size_t>(m)] += 1.0 / static_cast<double>(samples);
      sq += d / static_cast<double>(samples);
      worst_sq = std::max(worst_sq, d);
    }
    double tv = 0.0;
    for (int64_t m = 0; m < c.modes; ++m) tv += 0.5 * std::abs(histogram[static_cast<size_t>(m)] - world.mode_weights(k)[static_cast<size_t>(m)]);
    total_sq += sq / static_cast<double>(c.prompts);
    total_tv += tv / static_cast<double>(c.prompts);
    per_prompt.push_back({{"prompt", k}, {"mean_sq_distance", sq}, {"mode_tv", tv}, {"mode_histogram", histogram}});
  }
  return {{"samples_per_prompt", samples},
          {"steps", steps},
          {"mean_sq_distance", total_sq},
          {"max_sq_distance", worst_sq},
          {"base_noise_var", c.noise_std * c.noise_std},
          {"mode_tv", total_tv},
          {"per_prompt", per_prompt}};
}

std::unique_ptr<Backbone> load_reference(const PreparedWorld& prepared, const BackboneOptions& options) {
  return BackboneRegistry::instance().load("unet2d", prepared.reference_model, options);
}

PreparedWorld prepare_world(const WorldConfig& config, const PrepareOptions& options) {
  const World world(config);
  const fs::path root = cache_root(config, options);
  PreparedWorld out;
  out.reference_key = reference_key(config);
  out.data_key = data_key(config);

  out.reference_dir = detail::publish_once(
      root, "reference-" + out.reference_key,
      [&](const fs::path& tmp) {
        const SingleThread single_thread;
        log::info("toy-world: pretraining the reference UNet (" + std::to_string(config.pretrain_steps) + " steps, batch " +
                  std::to_string(config.pretrain_batch) + ", one thread) into " +
                  (root / ("reference-" + out.reference_key)).string());
        const nlohmann::json unet_config = reference_unet_config(config);
        std::unique_ptr<Backbone> unet = with_seeded_default_generator(config.pretrain_seed, [&] {
          return BackboneRegistry::instance().create("unet2d", unet_config, BackboneOptions{});
        });
        nlohmann::json report = pretrain(*unet, world);
        report["sample_quality"] = sample_quality(*unet, world, kQualitySamples, kQualitySteps, 0);
        unet->save(tmp / "unet");
        detail::write_json(tmp / "pretrain.json", report);
        detail::write_json(tmp / "world.json", {{"key", out.reference_key}, {"code", kCodeVersion}, {"torch", TORCH_VERSION},
                                                {"config", config.to_json()}, {"unet", unet_config}});
        log::info("toy-world: reference pretrained in " + fixed(report["seconds"].get<double>(), 1) + " s, final loss " +
                  fixed(report["final_loss"].get<double>()) + ", samples' mean squared distance to the nearest mode " +
                  fixed(report["sample_quality"]["mean_sq_distance"].get<double>()) + " (base: " +
                  fixed(config.noise_std * config.noise_std) + "), mode TV " +
                  fixed(report["sample_quality"]["mode_tv"].get<double>(), 3));
      },
      &out.reference_built);
  out.reference_model = out.reference_dir / "unet";
  out.pretrain_report = detail::read_json(out.reference_dir / "pretrain.json");
  if (detail::read_json(out.reference_dir / "world.json").value("key", std::string()) != out.reference_key)
    throw WorldError("toy-world cache: " + out.reference_dir.string() + "/world.json does not hold key " + out.reference_key +
                     "; HINT: delete the folder and run again");

  out.data_dir = detail::publish_once(
      root, "data-" + out.data_key,
      [&](const fs::path& tmp) {
        std::vector<Pair> train;
        if (config.pair_source == "base") {
          train = world.base_train_pairs();
        } else {
          const SingleThread single_thread;
          log::info("toy-world: sampling " + std::to_string(2 * config.train_pairs) + " training images from the reference");
          std::unique_ptr<Backbone> reference = load_reference(out);
          std::vector<int64_t> prompts;
          std::vector<uint64_t> index;
          for (int64_t i = 0; i < config.train_pairs; ++i)
            for (int side = 0; side < 2; ++side) {
              prompts.push_back(world.train_pair_prompt(i));
              index.push_back(static_cast<uint64_t>(2 * i + side));
            }
          const std::vector<float> x = sample_model(*reference, world, prompts, stream_id("pair-noise", config.pair_seed),
                                                    index, config.pair_sample_steps, 1.0);
          const int64_t D = world.latent_numel();
          for (int64_t i = 0; i < config.train_pairs; ++i) {
            const int64_t k = world.train_pair_prompt(i);
            const float* a = x.data() + 2 * i * D;
            const float* b = a + D;
            train.push_back(world.make_pair(world.pair_id("train", i), k, a, b, world.nearest_mode(k, a),
                                            world.nearest_mode(k, b), config.bt_temperature));
          }
        }
        const std::string source = std::string(kDataId) + ":" + out.data_key;
        detail::write_pair_shard(tmp / "train.h5", world, train, "train", source);
        detail::write_pair_shard(tmp / "heldout.h5", world, world.heldout_pairs(), "heldout", source);
        size_t agree = 0;
        for (const Pair& p : train) agree += p.reward_w >= p.reward_l ? 1 : 0;
        detail::write_json(tmp / "world.json", {{"key", out.data_key},
                                                {"reference_key", out.reference_key},
                                                {"code", kCodeVersion},
                                                {"config", config.to_json()},
                                                {"train_pairs", train.size()},
                                                {"train_oracle_agreement", train.empty() ? 1.0 : static_cast<double>(agree) / static_cast<double>(train.size())},
                                                {"prompts", world_summary(world)}});
      },
      &out.data_built);
  out.train_shard = out.data_dir / "train.h5";
  out.heldout_shard = out.data_dir / "heldout.h5";
  for (const fs::path& p : {out.train_shard, out.heldout_shard, out.reference_model / "config.json"})
    if (!fs::exists(p))
      throw WorldError("toy-world cache: " + p.string() + " is missing; HINT: delete " + p.parent_path().string() +
                       " and run again");
  if (!out.reference_built && !out.data_built)
    log::info("toy-world: using cached world " + out.data_dir.string());
  return out;
}

}  // namespace prefdiff::toy
