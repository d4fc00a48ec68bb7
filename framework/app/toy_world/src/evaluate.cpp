// Policy-vs-reference evaluation in the toy world.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/nn/module.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "prefdiff/toy_world/evaluate.hpp"
#include "prefdiff/toy_world/prepare.hpp"
#include "eval_mode.hpp"

namespace prefdiff::toy {
namespace {

struct Moments {  // running mean and variance (Welford), for standard errors
  double n = 0, mean = 0, m2 = 0;
  void add(double x) {
    n += 1;
    const double d = x - mean;
    mean += d / n;
    m2 += d * (x - mean);
  }
  double stderr_() const { return n > 1 ? std::sqrt(m2 / (n - 1) / n) : 0.0; }
};

struct SampleStats {
  double mode_entropy = 0, pairwise_rms = 0, best_mode_fraction = 0, off_manifold_mse = 0;
};

// Diversity and placement of the `count` samples of prompt k starting at x.
SampleStats sample_stats(const World& world, int64_t k, const float* x, int64_t count) {
  const int64_t D = world.latent_numel(), M = world.config().modes;
  SampleStats s;
  std::vector<double> histogram(static_cast<size_t>(M), 0.0);
  for (int64_t j = 0; j < count; ++j) {
    double d = 0.0;
    const int64_t m = world.nearest_mode(k, x + j * D, &d);
    histogram[static_cast<size_t>(m)] += 1.0;
    s.off_manifold_mse += d / static_cast<double>(count);
    if (m == world.best_mode(k)) s.best_mode_fraction += 1.0 / static_cast<double>(count);
  }
  for (double h : histogram)
    if (h > 0) {
      const double p = h / static_cast<double>(count);
      s.mode_entropy -= p * std::log(p);
    }
  double sum = 0.0;
  int64_t pairs = 0;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t j = i + 1; j < count; ++j) {
      double sq = 0.0;
      for (int64_t e = 0; e < D; ++e) {
        const double v = static_cast<double>(x[i * D + e]) - static_cast<double>(x[j * D + e]);
        sq += v * v;
      }
      sum += std::sqrt(sq / static_cast<double>(D));
      ++pairs;
    }
  s.pairwise_rms = pairs > 0 ? sum / static_cast<double>(pairs) : 0.0;
  return s;
}

// Per-image denoising MSE (fp32) of `model` on the doubled batch [winners; losers]; with `error_wl`, also
// <e_w,e_l>/D per pair from the same fp32 error, as the training step computes it (dpo_step.cpp).
at::Tensor pair_mse(Backbone& model, const at::Tensor& noisy, const at::Tensor& t, const at::Tensor& text,
                    const at::Tensor& eps, at::Tensor* error_wl = nullptr) {
  const at::Tensor pred = model.forward(noisy.to(model.device(), model.dtype()), t.to(model.device()),
                                        text.to(model.device(), model.dtype()));
  const at::Tensor error = pred.to(at::kFloat) - eps.to(model.device());
  if (error_wl != nullptr) {
    const std::vector<at::Tensor> halves = error.chunk(2);
    *error_wl = (halves[0] * halves[1]).mean({1, 2, 3}).to(at::kCPU).to(at::kDouble).contiguous();
  }
  return error.pow(2).mean({1, 2, 3}).to(at::kCPU).to(at::kDouble);
}

}  // namespace

nlohmann::json evaluate(Backbone& policy, Backbone& reference, const World& world, const EvalConfig& cfg,
                        ObjectiveSet& objectives, int64_t step) {
  const WorldConfig& c = world.config();
  const int64_t D = world.latent_numel(), S = cfg.samples_per_prompt;
  std::vector<int64_t> eval_prompts = cfg.prompts == "train"     ? world.train_prompts()
                                      : cfg.prompts == "heldout" ? world.heldout_prompts()
                                                                 : std::vector<int64_t>();
  if (cfg.prompts == "all")
    for (int64_t k = 0; k < c.prompts; ++k) eval_prompts.push_back(k);
  else if (cfg.prompts != "train" && cfg.prompts != "heldout")
    throw WorldError("[eval] prompts = '" + cfg.prompts + "': expected all, train or heldout");
  if (eval_prompts.empty())
    throw WorldError("[eval] prompts = '" + cfg.prompts + "' selects no prompt in this world (heldout_prompts = " +
                     std::to_string(c.heldout_prompts) + "); HINT: use prompts = \"all\"");

  // Identical inputs for both models: the same prompts, noise draws and batches.
  std::vector<int64_t> prompts;
  std::vector<uint64_t> index;
  for (int64_t k : eval_prompts)
    for (int64_t j = 0; j < S; ++j) {
      prompts.push_back(k);
      index.push_back((static_cast<uint64_t>(k) << 32) | static_cast<uint64_t>(j));
    }
  const uint64_t noise_stream = stream_id("eval-noise", cfg.seed);
  const std::vector<float> xp = sample_model(policy, world, prompts, noise_stream, index, cfg.steps, cfg.guidance_scale, cfg.batch_size);
  const std::vector<float> xr = sample_model(reference, world, prompts, noise_stream, index, cfg.steps, cfg.guidance_scale, cfg.batch_size);

  Moments win, gain, r_policy, r_reference;
  Moments split_win[2], split_gain[2];  // [train, heldout]
  SampleStats mean_p, mean_r;
  nlohmann::json per_prompt = nlohmann::json::array();
  for (size_t pi = 0; pi < eval_prompts.size(); ++pi) {
    const int64_t k = eval_prompts[pi];
    Moments prompt_win, prompt_gain;
    for (int64_t j = 0; j < S; ++j) {
      const int64_t row = static_cast<int64_t>(pi) * S + j;
      const double rp = world.reward(k, xp.data() + row * D);
      const double rr = world.reward(k, xr.data() + row * D);
      const double w = rp > rr ? 1.0 : (rp == rr ? 0.5 : 0.0);
      for (Moments* m : {&win, &prompt_win, &split_win[world.is_heldout(k) ? 1 : 0]}) m->add(w);
      for (Moments* m : {&gain, &prompt_gain, &split_gain[world.is_heldout(k) ? 1 : 0]}) m->add(rp - rr);
      r_policy.add(rp);
      r_reference.add(rr);
    }
    const SampleStats sp = sample_stats(world, k, xp.data() + static_cast<int64_t>(pi) * S * D, S);
    const SampleStats sr = sample_stats(world, k, xr.data() + static_cast<int64_t>(pi) * S * D, S);
    const double share = 1.0 / static_cast<double>(eval_prompts.size());
    for (auto [mean, s] : {std::pair<SampleStats*, const SampleStats*>{&mean_p, &sp}, {&mean_r, &sr}}) {
      mean->mode_entropy += share * s->mode_entropy;
      mean->pairwise_rms += share * s->pairwise_rms;
      mean->best_mode_fraction += share * s->best_mode_fraction;
      mean->off_manifold_mse += share * s->off_manifold_mse;
    }
    if (cfg.per_prompt)
      per_prompt.push_back({{"prompt", k},
                            {"heldout", world.is_heldout(k)},
                            {"win_rate", prompt_win.mean},
                            {"reward_gain", prompt_gain.mean},
                            {"mode_entropy/policy", sp.mode_entropy},
                            {"mode_entropy/reference", sr.mode_entropy},
                            {"best_mode_fraction/policy", sp.best_mode_fraction},
                            {"best_mode_fraction/reference", sr.best_mode_fraction}});
  }

  // Implicit preference accuracy on the clean held-out pairs: winner and loser share t and noise.
  std::vector<Pair> pairs = world.heldout_pairs();
  if (cfg.heldout_pairs > 0 && cfg.heldout_pairs < static_cast<int64_t>(pairs.size())) pairs.resize(static_cast<size_t>(cfg.heldout_pairs));
  const diffusion::NoiseSchedule schedule(schedule_config());
  const int64_t T = schedule.config().num_train_timesteps;
  const CounterRng t_rng(c.seed, stream_id("eval-implicit-t", cfg.seed));
  const uint64_t eps_stream = stream_id("eval-implicit-eps", cfg.seed);
  Moments accuracy, margin, split_accuracy[2];
  {
    torch::NoGradGuard no_grad;
    const detail::EvalMode policy_eval(policy), reference_eval(reference);
    const int64_t N = static_cast<int64_t>(pairs.size());
    for (int64_t first = 0; first < N; first += cfg.batch_size) {
      const int64_t n = std::min(cfg.batch_size, N - first);
      at::Tensor xw = at::empty({n, c.latent_channels, c.latent_size, c.latent_size}, at::kFloat);
      at::Tensor xl = at::empty_like(xw), eps = at::empty_like(xw);
      at::Tensor t = at::empty({n}, at::kLong);
      at::Tensor text = at::empty({n, c.embed_tokens, c.embed_dim}, at::kFloat);
      for (int64_t i = 0; i < n; ++i) {
        const Pair& p = pairs[static_cast<size_t>(first + i)];
        std::copy(p.latent_w.begin(), p.latent_w.end(), xw.data_ptr<float>() + i * D);
        std::copy(p.latent_l.begin(), p.latent_l.end(), xl.data_ptr<float>() + i * D);
        world.standard_normal(eps_stream, static_cast<uint64_t>(first + i), eps.data_ptr<float>() + i * D);
        t.data_ptr<int64_t>()[i] =
            std::min<int64_t>(T - 1, static_cast<int64_t>(t_rng.uniform(static_cast<uint64_t>(first + i)) * static_cast<double>(T)));
        const std::vector<float>& e = world.prompt_embedding(p.prompt);
        std::copy(e.begin(), e.end(), text.data_ptr<float>() + i * c.embed_tokens * c.embed_dim);
      }
      const at::Tensor noisy = at::cat({schedule.add_noise(xw, eps, t), schedule.add_noise(xl, eps, t)}, 0);
      const at::Tensor tt = at::cat({t, t}, 0), text2 = at::cat({text, text}, 0), eps2 = at::cat({eps, eps}, 0);
      at::Tensor wl;  // the policy's error inner products, for objectives that declare they read them
      const at::Tensor mp =
          pair_mse(policy, noisy, tt, text2, eps2, objectives.needs_error_inner_products() ? &wl : nullptr).contiguous();
      const at::Tensor mr = pair_mse(reference, noisy, tt, text2, eps2).contiguous();
      const double* pm = mp.data_ptr<double>();
      const double* rm = mr.data_ptr<double>();
      // The margin of the run's objective, from the per-image MSEs (fp32 values, combined in double).
      ObjectiveInputs errors;
      errors.model_w.assign(pm, pm + n);
      errors.model_l.assign(pm + n, pm + 2 * n);
      errors.ref_w.assign(rm, rm + n);
      errors.ref_l.assign(rm + n, rm + 2 * n);
      for (int64_t i = 0; i < n; ++i) errors.timestep.push_back(static_cast<double>(t.data_ptr<int64_t>()[i]));
      if (wl.defined()) {  // error_ww/error_ll are the MSEs themselves (objective.h)
        errors.error_wl.assign(wl.data_ptr<double>(), wl.data_ptr<double>() + n);
        errors.error_ww = errors.model_w;
        errors.error_ll = errors.model_l;
      }
      errors.step = step;
      // Overflowing or NaN policy outputs: no margin (the plugin would refuse the input); the NaN makes the
      // metrics non-finite, which `prefdiff eval` reports without writing a result.
      const auto finite = [](const std::vector<double>& v) {
        return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
      };
      ObjectiveOutputs outputs;
      if (finite(errors.model_w) && finite(errors.model_l) && finite(errors.ref_w) && finite(errors.ref_l))
        objectives.evaluate(errors, outputs);
      else
        outputs.margin.assign(static_cast<size_t>(n), std::numeric_limits<double>::quiet_NaN());
      for (int64_t i = 0; i < n; ++i) {
        const double h = outputs.margin[static_cast<size_t>(i)];
        const double a = h > 0 ? 1.0 : (h == 0 ? 0.5 : 0.0);  // ties half, as the official implicit_acc
        accuracy.add(a);
        split_accuracy[world.is_heldout(pairs[static_cast<size_t>(first + i)].prompt) ? 1 : 0].add(a);
        margin.add(h);
      }
    }
  }

  nlohmann::json r = {{"win_rate", win.mean},
                      {"win_rate_stderr", win.stderr_()},
                      {"reward_gain", gain.mean},
                      {"reward_gain_stderr", gain.stderr_()},
                      {"reward/policy", r_policy.mean},
                      {"reward/reference", r_reference.mean},
                      {"mode_entropy/policy", mean_p.mode_entropy},
                      {"mode_entropy/reference", mean_r.mode_entropy},
                      {"mode_entropy/max", std::log(static_cast<double>(c.modes))},
                      {"pairwise_rms/policy", mean_p.pairwise_rms},
                      {"pairwise_rms/reference", mean_r.pairwise_rms},
                      {"best_mode_fraction/policy", mean_p.best_mode_fraction},
                      {"best_mode_fraction/reference", mean_r.best_mode_fraction},
                      {"off_manifold_mse/policy", mean_p.off_manifold_mse},
                      {"off_manifold_mse/reference", mean_r.off_manifold_mse},
                      {"off_manifold_mse/base", c.noise_std * c.noise_std},
                      {"implicit_accuracy", accuracy.mean},
                      {"implicit_accuracy_stderr", accuracy.stderr_()},
                      {"implicit_margin", margin.mean},
                      {"samples", static_cast<int64_t>(prompts.size())},
                      {"pairs", static_cast<int64_t>(pairs.size())},
                      {"config", cfg.to_json()}};
  const char* split_name[2] = {"train_prompts", "heldout_prompts"};
  for (int s = 0; s < 2; ++s) {
    if (split_win[s].n > 0) {
      r[std::string(split_name[s]) + "/win_rate"] = split_win[s].mean;
      r[std::string(split_name[s]) + "/reward_gain"] = split_gain[s].mean;
    }
    if (split_accuracy[s].n > 0) r[std::string(split_name[s]) + "/implicit_accuracy"] = split_accuracy[s].mean;
  }
  if (cfg.per_prompt) r["per_prompt"] = per_prompt;
  return r;
}

}  // namespace prefdiff::toy
