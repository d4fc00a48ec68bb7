// A measurement tool, not the trainer: a minimal Diffusion-DPO loop over the toy world's pairs with
// uniform label flips, to see how the world responds (win rate vs flip rate) while choosing its knobs.
// The real loop is `prefdiff train`; numbers from here are a sanity check only.
//
// Usage: toy_world_dpo_probe '<[data] JSON>' '<probe JSON>' [CACHE_ROOT]
//   probe keys: steps (200), batch (16), lr (1e-4), beta (5000), flips ([0, 0.2, 0.4]), seeds ([0]),
//               eval_samples (32), eval_steps (20)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <iostream>

#include "prefdiff/sdk.hpp"
#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/toy_world/evaluate.hpp"
#include "prefdiff/toy_world/prepare.hpp"

using namespace prefdiff::toy;

int main(int argc, char** argv) {
  prefdiff::PluginRegistry registry;
  registry.scan({PREFDIFF_PLUGIN_BUILD_DIR});
  if (argc < 3) {
    std::cerr << "usage: " << argv[0] << " '<[data] JSON>' '<probe JSON>' [CACHE_ROOT]\n";
    return 2;
  }
  const WorldConfig config = WorldConfig::from_json(nlohmann::json::parse(argv[1]));
  const nlohmann::json probe = nlohmann::json::parse(argv[2]);
  PrepareOptions options;
  if (argc > 3) options.cache_root = argv[3];
  const auto t0 = std::chrono::steady_clock::now();
  const PreparedWorld prepared = prepare_world(config, options);
  std::cerr << "prepare_world: " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s; pretrain report: " << prepared.pretrain_report["seconds"] << " s, quality "
            << prepared.pretrain_report["sample_quality"]["mean_sq_distance"] << " / mode TV "
            << prepared.pretrain_report["sample_quality"]["mode_tv"] << "\n";
  const World world(config);
  const std::vector<Pair> pairs = world.base_train_pairs();
  const int64_t steps = probe.value("steps", 200), B = probe.value("batch", 16);
  const double lr = probe.value("lr", 1e-4), beta = probe.value("beta", 5000.0);
  const std::vector<double> flips = probe.value("flips", std::vector<double>{0.0, 0.2, 0.4});
  const std::vector<uint64_t> seeds = probe.value("seeds", std::vector<uint64_t>{0});
  EvalConfig eval;
  eval.samples_per_prompt = probe.value("eval_samples", 32);
  eval.steps = probe.value("eval_steps", 20);
  eval.per_prompt = false;
  const prefdiff::diffusion::NoiseSchedule schedule(schedule_config());
  auto reference = load_reference(prepared);
  reference->set_requires_grad(false);
  const int64_t D = world.latent_numel(), C = config.latent_channels, H = config.latent_size;
  const int64_t S = config.embed_tokens, X = config.embed_dim;

  for (uint64_t seed : seeds)
    for (double flip : flips) {
      const auto start = std::chrono::steady_clock::now();
      auto policy = load_reference(prepared);
      policy->train(true);
      std::vector<at::Tensor> params;
      for (auto& kv : policy->named_parameters()) params.push_back(kv.second);
      torch::optim::AdamW opt(params, torch::optim::AdamWOptions(lr).weight_decay(0.0));
      const CounterRng draws(seed, stream_id("probe", static_cast<uint64_t>(flip * 1000)));
      double flipped = 0, used = 0;
      for (int64_t step = 0; step < steps; ++step) {
        at::Tensor xw = at::empty({B, C, H, H}), xl = at::empty({B, C, H, H}), eps = at::empty({B, C, H, H});
        at::Tensor t = at::empty({B}, at::kLong), text = at::empty({B, S, X});
        for (int64_t b = 0; b < B; ++b) {
          const uint64_t i = static_cast<uint64_t>(step * B + b);
          const Pair& p = pairs[static_cast<size_t>(draws.bits(4 * i) % pairs.size())];
          // Label noise keyed by (seed, pair id), as the label-flip injector does.
          const bool swap = prefdiff::sdk::hash_uniform(seed, p.pair_id, 77) < flip;
          flipped += swap;
          used += 1;
          std::copy((swap ? p.latent_l : p.latent_w).begin(), (swap ? p.latent_l : p.latent_w).end(), xw.data_ptr<float>() + b * D);
          std::copy((swap ? p.latent_w : p.latent_l).begin(), (swap ? p.latent_w : p.latent_l).end(), xl.data_ptr<float>() + b * D);
          world.standard_normal(stream_id("probe-eps", seed), i, eps.data_ptr<float>() + b * D);
          t.data_ptr<int64_t>()[b] = static_cast<int64_t>(draws.uniform(4 * i + 1) * 1000);
          const auto& e = world.prompt_embedding(p.prompt);
          std::copy(e.begin(), e.end(), text.data_ptr<float>() + b * S * X);
        }
        const at::Tensor noisy = at::cat({schedule.add_noise(xw, eps, t), schedule.add_noise(xl, eps, t)});
        const at::Tensor tt = at::cat({t, t}), tx = at::cat({text, text}), e2 = at::cat({eps, eps});
        at::Tensor ref_mse;
        {
          torch::NoGradGuard ng;
          ref_mse = (reference->forward(noisy, tt, tx) - e2).pow(2).mean({1, 2, 3});
        }
        const at::Tensor model_mse = (policy->forward(noisy, tt, tx) - e2).pow(2).mean({1, 2, 3});
        const at::Tensor diff = model_mse - ref_mse;
        const at::Tensor h = -0.5 * beta * (diff.slice(0, 0, B) - diff.slice(0, B));
        const at::Tensor loss = at::softplus(-h).mean();
        opt.zero_grad();
        loss.backward();
        opt.step();
      }
      prefdiff::ObjectiveSet margins(nlohmann::json::array({{{"id", "dpo"}, {"beta", beta}}}), registry);
      const nlohmann::json r = evaluate(*policy, *reference, world, eval, margins);
      std::cout << nlohmann::json{{"seed", seed},
                                  {"flip", flip},
                                  {"flipped", flipped / used},
                                  {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
                                  {"win_rate", r["win_rate"]},
                                  {"win_rate_stderr", r["win_rate_stderr"]},
                                  {"reward_gain", r["reward_gain"]},
                                  {"heldout_win", r.value("heldout_prompts/win_rate", -1.0)},
                                  {"best_mode/policy", r["best_mode_fraction/policy"]},
                                  {"best_mode/ref", r["best_mode_fraction/reference"]},
                                  {"entropy/policy", r["mode_entropy/policy"]},
                                  {"entropy/ref", r["mode_entropy/reference"]},
                                  {"off_manifold/policy", r["off_manifold_mse/policy"]},
                                  {"implicit_accuracy", r["implicit_accuracy"]}}
                       .dump()
                << std::endl;
    }
  return 0;
}
