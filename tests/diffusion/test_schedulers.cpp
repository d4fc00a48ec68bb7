// Noise schedule, targets and samplers vs diffusers (../shared/golden/schedulers). Step counts, timesteps
// and shapes come from the files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "common/golden.hpp"
#include "prefdiff/diffusion/ddim.hpp"
#include "prefdiff/diffusion/euler.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/diffusion/sampler.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/safetensors.hpp"

using namespace prefdiff::diffusion;
using prefdiff::model_io::SafetensorsFile;
using namespace prefdiff::testing;

namespace {

std::filesystem::path sched_dir() { return golden_dir() / "schedulers"; }

ScheduleConfig config_of(const std::string& name) {
  auto p = sched_dir() / (name + "_scheduler_config.json");
  return ScheduleConfig::from_json(prefdiff::model_io::read_json_file(p), p.string());
}

}  // namespace

TEST(NoiseSchedule, MatchesDiffusersDdpmInFloat32) {
  auto g = SafetensorsFile::open(sched_dir() / "ddpm.safetensors");
  NoiseSchedule s(config_of("ddpm"));
  EXPECT_TRUE(close_elementwise("betas", s.betas(), g.load("betas"), 0, 1e-6));
  EXPECT_TRUE(close_elementwise("alphas_cumprod", s.alphas_cumprod(), g.load("alphas_cumprod"), 0, 1e-6));
  at::Tensor x0 = g.load("add_noise.original_samples"), eps = g.load("add_noise.noise"), t = g.load("add_noise.timesteps");
  EXPECT_TRUE(close_elementwise("add_noise", s.add_noise(x0, eps, t), g.load("add_noise.noisy_samples"), 1e-6, 1e-6));
  EXPECT_TRUE(close_elementwise("velocity", s.velocity(x0, eps, t), g.load("get_velocity.velocity"), 1e-6, 1e-6));
  EXPECT_TRUE(at::equal(s.target(x0, eps, t), eps)) << "epsilon prediction targets the noise";
}

TEST(NoiseSchedule, MatchesTheFloat64Reference) {
  auto g = SafetensorsFile::open(sched_dir() / "ddpm_f64.safetensors");
  auto in = SafetensorsFile::open(sched_dir() / "ddpm.safetensors");  // inputs are shared with the f32 file
  NoiseSchedule s(config_of("ddpm"), at::kDouble);
  EXPECT_TRUE(close_elementwise("betas_f64", s.betas(), g.load("betas"), 1e-15, 1e-12));
  EXPECT_TRUE(close_elementwise("alphas_cumprod_f64", s.alphas_cumprod(), g.load("alphas_cumprod"), 1e-15, 1e-12));
  at::Tensor x0 = in.load("add_noise.original_samples", at::kDouble), eps = in.load("add_noise.noise", at::kDouble),
             t = in.load("add_noise.timesteps");
  EXPECT_TRUE(close_elementwise("add_noise_f64", s.add_noise(x0, eps, t), g.load("add_noise.noisy_samples"), 1e-12, 1e-12));
  EXPECT_TRUE(close_elementwise("velocity_f64", s.velocity(x0, eps, t), g.load("get_velocity.velocity"), 1e-12, 1e-12));
}

TEST(NoiseSchedule, SpecTableAndSnr) {
  NoiseSchedule s;  // SD/SDXL defaults
  ScheduleConfig sd;
  NoiseSchedule d(sd, at::kDouble);
  struct Row { int64_t t; double beta, abar, snr; };
  for (Row r : {Row{0, 0.00085, 0.99915, 1175.47}, Row{1, 0.000854699, 0.998296, 585.864},
                Row{499, 0.00480379, 0.277670, 0.384408}, Row{999, 0.012, 0.00466010, 0.00468192}}) {
    EXPECT_NEAR(d.betas()[r.t].item<double>(), r.beta, 1e-5 * r.beta) << r.t;
    EXPECT_NEAR(d.alphas_cumprod()[r.t].item<double>(), r.abar, 1e-5 * r.abar) << r.t;
    EXPECT_NEAR(s.snr(at::tensor({r.t}))[0].item<double>(), r.snr, 1e-4 * r.snr) << r.t;
  }
  // Min-SNR-5 weights: min(SNR,5)/SNR for epsilon; v-prediction divides by SNR+1.
  at::Tensor t = at::tensor({0, 999});
  at::Tensor w = s.min_snr_weights(t, 5.0);
  EXPECT_NEAR(w[0].item<double>(), 5.0 / 1175.47, 1e-6);
  EXPECT_NEAR(w[1].item<double>(), 1.0, 1e-6);
  ScheduleConfig v;
  v.prediction_type = PredictionType::kVPrediction;
  NoiseSchedule sv(v);
  at::Tensor snr999 = sv.snr(at::tensor({999}));
  EXPECT_NEAR(sv.min_snr_weights(at::tensor({999}), 5.0)[0].item<double>(), (snr999 / (snr999 + 1))[0].item<double>(), 1e-7);
  at::Tensor x0 = at::randn({2, 4, 3, 3}), eps = at::randn({2, 4, 3, 3});
  EXPECT_TRUE(at::equal(sv.target(x0, eps, t), sv.velocity(x0, eps, t)));
}

TEST(Ddim, MatchesDiffusersStepByStepAndOverTheTrajectory) {
  auto g = SafetensorsFile::open(sched_dir() / "ddim.safetensors");
  DdimScheduler ddim(config_of("ddim"));
  int64_t steps = g.load("num_inference_steps").item<int64_t>();
  ddim.set_timesteps(steps);
  ASSERT_TRUE(at::equal(ddim.timesteps(), g.load("timesteps")));
  EXPECT_EQ(ddim.final_alpha_cumprod().item<float>(), g.load("final_alpha_cumprod").item<float>());
  at::Tensor fixed = g.load("fixed_model_tensor"), scale = g.load("model_output_scale");
  at::Tensor prev = g.load("prev_samples"), pred = g.load("pred_original_samples");
  at::Tensor x = g.load("initial_latent");
  for (int64_t k = 0; k < steps; ++k) {
    int64_t t = ddim.timesteps()[k].item<int64_t>();
    at::Tensor given = k == 0 ? g.load("initial_latent") : prev[k - 1];
    // Per step, from the saved previous sample.
    auto o = ddim.step(0.1 * given + fixed * scale[k], t, given);
    ASSERT_TRUE(close_elementwise("ddim.prev_samples[" + std::to_string(k) + "]", o.prev_sample, prev[k], 1e-6, 1e-5));
    ASSERT_TRUE(close_elementwise("ddim.pred_original_samples[" + std::to_string(k) + "]", o.pred_original_sample, pred[k], 1e-6, 1e-5));
    // Our own trajectory.
    x = ddim.step(0.1 * x + fixed * scale[k], t, x).prev_sample;
  }
  EXPECT_TRUE(close_elementwise("ddim.final_sample", x, prev[steps - 1], 1e-5, 1e-5));
}

TEST(Ddim, EtaAddsSeededNoise) {
  DdimScheduler ddim(config_of("ddim"));
  ddim.set_timesteps(10);
  at::Tensor x = at::randn({1, 4, 4, 4}), eps = at::randn({1, 4, 4, 4});
  auto det = ddim.step(eps, 901, x, 0.0);
  auto a = ddim.step(eps, 901, x, 1.0, at::detail::createCPUGenerator(9));
  auto b = ddim.step(eps, 901, x, 1.0, at::detail::createCPUGenerator(9));
  EXPECT_TRUE(at::equal(a.prev_sample, b.prev_sample));
  EXPECT_FALSE(at::allclose(a.prev_sample, det.prev_sample));
  // sigma_t = eta * sqrt((1-a_prev)/(1-a_t) * (1 - a_t/a_prev)), with the noise removed it is deterministic.
  const auto& ac = ddim.schedule().alphas_cumprod();
  double at_ = ac[901].item<double>(), ap = ac[801].item<double>();
  double sigma = std::sqrt((1 - ap) / (1 - at_) * (1 - at_ / ap));
  at::Tensor noise = at::randn({1, 4, 4, 4}, at::detail::createCPUGenerator(9));
  at::Tensor x0 = (x - std::sqrt(1 - at_) * eps) / std::sqrt(at_);
  at::Tensor expect = std::sqrt(ap) * x0 + std::sqrt(1 - ap - sigma * sigma) * eps + sigma * noise;
  EXPECT_TRUE(at::allclose(a.prev_sample, expect, 1e-4, 1e-5));
}

TEST(Euler, MatchesDiffusersStepByStepAndOverTheTrajectory) {
  auto g = SafetensorsFile::open(sched_dir() / "euler.safetensors");
  EulerScheduler euler(config_of("euler"));
  int64_t steps = g.load("num_inference_steps").item<int64_t>();
  euler.set_timesteps(steps);
  ASSERT_TRUE(at::equal(euler.timesteps(), g.load("timesteps")));
  EXPECT_TRUE(close_elementwise("euler.sigmas", euler.sigmas(), g.load("sigmas"), 0, 1e-6));
  EXPECT_TRUE(close_elementwise("euler.init_noise_sigma", euler.init_noise_sigma(), g.load("init_noise_sigma"), 0, 1e-6));
  at::Tensor fixed = g.load("fixed_model_tensor"), scale = g.load("model_output_scale");
  at::Tensor prev = g.load("prev_samples"), pred = g.load("pred_original_samples");
  at::Tensor x = g.load("initial_latent") * euler.init_noise_sigma();
  EXPECT_TRUE(close_elementwise("euler.initial_sample", x, g.load("initial_sample"), 1e-6, 1e-6));
  for (int64_t k = 0; k < steps; ++k) {
    at::Tensor given = k == 0 ? g.load("initial_sample") : prev[k - 1];
    auto o = euler.step(0.1 * euler.scale_model_input(given, k) + fixed * scale[k], k, given);
    ASSERT_TRUE(close_elementwise("euler.prev_samples[" + std::to_string(k) + "]", o.prev_sample, prev[k], 1e-6, 1e-5));
    ASSERT_TRUE(close_elementwise("euler.pred_original_samples[" + std::to_string(k) + "]", o.pred_original_sample, pred[k], 1e-6, 1e-5));
    x = euler.step(0.1 * euler.scale_model_input(x, k) + fixed * scale[k], k, x).prev_sample;
  }
  EXPECT_TRUE(close_elementwise("euler.final_sample", x, prev[steps - 1], 1e-5, 1e-5));
}

TEST(Sampler, LoopsReproduceTheGoldenTrajectories) {
  // The golden "model" ignores guidance; with scale 1 the loops must reproduce the reference exactly.
  auto gd = SafetensorsFile::open(sched_dir() / "ddim.safetensors");
  at::Tensor fixed = gd.load("fixed_model_tensor");
  Denoiser fake = [&](const at::Tensor& x, const at::Tensor& t) { return 0.1 * x + fixed * (t.to(at::kFloat) / 1000); };
  DdimScheduler ddim(config_of("ddim"));
  SamplerOptions o;
  o.steps = gd.load("num_inference_steps").item<int64_t>();
  o.guidance_scale = 1.0;
  at::Tensor ref = gd.load("prev_samples");
  EXPECT_TRUE(close_elementwise("sample_ddim", sample_ddim(ddim, gd.load("initial_latent"), fake, o), ref[ref.size(0) - 1], 1e-5, 1e-5));
  auto ge = SafetensorsFile::open(sched_dir() / "euler.safetensors");
  fixed = ge.load("fixed_model_tensor");
  EulerScheduler euler(config_of("euler"));
  ref = ge.load("prev_samples");
  EXPECT_TRUE(close_elementwise("sample_euler", sample_euler(euler, ge.load("initial_latent"), fake, o), ref[ref.size(0) - 1], 1e-5, 1e-5));
}

TEST(Sampler, ClassifierFreeGuidanceDoublesTheBatchAndMixes) {
  at::Tensor u = at::randn({2, 4, 3, 3}), c = at::randn({2, 4, 3, 3});
  EXPECT_TRUE(at::allclose(classifier_free_guidance(at::cat({u, c}), 7.5), u + 7.5 * (c - u)));
  EXPECT_TRUE(at::allclose(classifier_free_guidance(at::cat({u, c}), 1.0), c));
  EXPECT_THROW(classifier_free_guidance(at::randn({3, 1}), 2.0), ScheduleError);
  int calls = 0;
  Denoiser d = [&](const at::Tensor& x, const at::Tensor&) {
    ++calls;
    EXPECT_EQ(x.size(0), 4) << "guidance runs [uncond; cond] in one batch";
    EXPECT_TRUE(at::equal(x.narrow(0, 0, 2), x.narrow(0, 2, 2)));
    return at::cat({at::zeros_like(x.narrow(0, 0, 2)), at::ones_like(x.narrow(0, 0, 2))});
  };
  DdimScheduler ddim(config_of("ddim"));
  SamplerOptions o;
  o.steps = 4;
  o.guidance_scale = 3.0;
  at::Tensor out = sample_ddim(ddim, at::randn({2, 4, 3, 3}), d, o);
  EXPECT_EQ(calls, 4);
  EXPECT_TRUE(out.isfinite().all().item<bool>());
}

TEST(ScheduleConfig, RefusesWhatIsNotImplemented) {
  nlohmann::json j = prefdiff::model_io::read_json_file(sched_dir() / "euler_scheduler_config.json");
  j["use_karras_sigmas"] = true;
  j["prediction_type"] = "sample";
  try {
    ScheduleConfig::from_json(j, "x.json");
    FAIL();
  } catch (const ScheduleError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("use_karras_sigmas"), std::string::npos) << m;
    EXPECT_NE(m.find("prediction_type"), std::string::npos) << m;
  }
  ScheduleConfig trailing = config_of("ddim");
  trailing.timestep_spacing = "trailing";
  // diffusers: round(arange(1000, 0, -1000/3)) - 1 = [999, 666, 332]
  EXPECT_TRUE(at::equal(inference_timesteps(trailing, 3), at::tensor({999, 666, 332}, at::kLong)));
}
