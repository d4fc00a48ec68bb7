// Loading the encoders from their folders and what happens with bad inputs: strict tensor matching (missing,
// mis-shaped, unexpected, each naming file and tensor), config problems (naming file and key), the
// checkpoint-name variants that occur in released files, dtypes (force_upcast, bf16/fp16), batch slicing,
// latent normalisation, EOS pooling rules and attention masks. Self-contained: tiny random models written here.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "clip/aesthetic_head.hpp"
#include "clip/openclip.hpp"
#include "clip/prompt_embeds.hpp"
#include "common/golden.hpp"
#include "encoder_test_util.hpp"
#include "vae/autoencoder_kl.hpp"

using namespace prefdiff::testing;
namespace clip = prefdiff::clip;
namespace vae = prefdiff::vae;
namespace fs = std::filesystem;
using json = nlohmann::json;
using prefdiff::model_io::ModelIoError;
using prefdiff::model_io::NamedTensors;

namespace {

bool contains(const std::string& haystack, const std::string& needle) { return haystack.find(needle) != std::string::npos; }

template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

NamedTensors named(torch::nn::Module& m) {
  NamedTensors out;
  for (const auto& item : m.named_parameters(true)) out.emplace_back(item.key(), item.value().detach().clone());
  return out;
}

void expect_same_parameters(torch::nn::Module& a, torch::nn::Module& b) {
  auto pa = a.named_parameters(true), pb = b.named_parameters(true);
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& item : pa) {
    ASSERT_TRUE(pb.contains(item.key())) << item.key();
    EXPECT_TRUE(at::equal(item.value(), pb[item.key()])) << item.key() << " differs after the round trip";
  }
}

// ---------------------------------------------------------------------------------------------------- VAE

json tiny_vae_config() {
  return json{{"_class_name", "AutoencoderKL"},
              {"in_channels", 3},
              {"out_channels", 3},
              {"block_out_channels", {8, 16}},
              {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D"}},
              {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D"}},
              {"layers_per_block", 1},
              {"latent_channels", 4},
              {"norm_num_groups", 4},
              {"scaling_factor", 0.5},
              {"sample_size", 16},
              {"some_future_key", "ignored"}};
}

// A VAE folder with random weights; returns the model it was written from.
vae::AutoencoderKL write_vae(const fs::path& dir, const json& config) {
  fs::create_directories(dir);
  write_json(dir / "config.json", config);
  vae::AutoencoderKL model(vae::AutoencoderKlConfig::from_json(config), at::TensorOptions().dtype(at::kFloat));
  prefdiff::model_io::write_safetensors(dir / "diffusion_pytorch_model.safetensors", named(*model));
  return model;
}

TEST(VaeLoading, RoundTripIsBitExactAndUnknownKeysAreIgnored) {
  const fs::path dir = scratch_dir("vae_rt");
  vae::AutoencoderKL written = write_vae(dir, tiny_vae_config());
  vae::AutoencoderKL loaded = vae::load_autoencoder_kl(dir);
  expect_same_parameters(*written, *loaded);
  EXPECT_FALSE(loaded->is_training());
  EXPECT_EQ(loaded->config().downscale_factor(), 2);
  fs::remove_all(dir);
}

TEST(VaeLoading, MissingMisshapedAndUnexpectedTensorsAreAllNamedWithTheFile) {
  const fs::path dir = scratch_dir("vae_bad");
  write_vae(dir, tiny_vae_config());
  const fs::path file = dir / "diffusion_pytorch_model.safetensors";
  rewrite_tensors(file, file, [](NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& nt) { return nt.first == "decoder.conv_out.bias"; }), t.end());
    for (auto& nt : t)
      if (nt.first == "encoder.conv_in.weight") nt.second = at::zeros({8, 3, 1, 1});
    t.emplace_back("encoder.extra.weight", at::zeros({2}));
  });
  const std::string m = error_of([&] { vae::load_autoencoder_kl(dir); });
  EXPECT_TRUE(contains(m, "3 problem(s)")) << m;
  EXPECT_TRUE(contains(m, file.string())) << m;
  EXPECT_TRUE(contains(m, "missing tensor 'decoder.conv_out.bias' [3]")) << m;
  EXPECT_TRUE(contains(m, "tensor 'encoder.conv_in.weight' has shape [8,3,1,1] in 'diffusion_pytorch_model.safetensors' "
                          "but the model expects [8,3,3,3]")) << m;
  EXPECT_TRUE(contains(m, "unexpected tensor 'encoder.extra.weight' in 'diffusion_pytorch_model.safetensors'")) << m;
  EXPECT_TRUE(contains(m, "HINT:")) << m;
  fs::remove_all(dir);
}

TEST(VaeLoading, ConfigProblemsNameTheFileAndEveryKey) {
  const fs::path dir = scratch_dir("vae_cfg");
  json cfg = tiny_vae_config();
  write_vae(dir, cfg);
  cfg.erase("latent_channels");
  cfg["block_out_channels"] = {8, 18};
  cfg["act_fn"] = "relu";
  write_json(dir / "config.json", cfg);
  const std::string m = error_of([&] { vae::load_autoencoder_kl(dir); });
  EXPECT_TRUE(contains(m, (dir / "config.json").string() + ": 3 problem(s) in the VAE config")) << m;
  EXPECT_TRUE(contains(m, "'latent_channels' is missing")) << m;
  EXPECT_TRUE(contains(m, "'block_out_channels' entry 1 (18) is not divisible by norm_num_groups = 4")) << m;
  EXPECT_TRUE(contains(m, "'act_fn' is \"relu\"")) << m;
  // Latent normalisation settings are checked too.
  json both = tiny_vae_config();
  both["shift_factor"] = 0.1;
  both["latents_mean"] = {0, 0, 0, 0};
  both["latents_std"] = {1, 1, 1};
  const std::string m2 = error_of([&] { vae::AutoencoderKlConfig::from_json(both, "x/config.json"); });
  EXPECT_TRUE(contains(m2, "'latents_std' has 3 entries but latent_channels is 4")) << m2;
  EXPECT_TRUE(contains(m2, "'shift_factor' is set together with latents_mean")) << m2;
  fs::remove_all(dir);
}

TEST(VaeLoading, DeprecatedAttentionNamesLoadLikeDiffusers) {
  const fs::path dir = scratch_dir("vae_old");
  vae::AutoencoderKL written = write_vae(dir, tiny_vae_config());
  const fs::path file = dir / "diffusion_pytorch_model.safetensors";
  rewrite_tensors(file, file, [](NamedTensors& t) {
    for (auto& nt : t)
      for (auto [now, old] : {std::pair{".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."},
                              {".to_out.0.", ".proj_attn."}})
        if (auto at = nt.first.find(now); at != std::string::npos) nt.first.replace(at, std::strlen(now), old);
  });
  ASSERT_TRUE(prefdiff::model_io::SafetensorsFile::open(file).contains("encoder.mid_block.attentions.0.query.weight"));
  vae::AutoencoderKL loaded = vae::load_autoencoder_kl(dir);
  expect_same_parameters(*written, *loaded);
  fs::remove_all(dir);
}

TEST(VaeModel, BatchSlicingGivesTheUnslicedResults) {
  vae::AutoencoderKL model(vae::AutoencoderKlConfig::from_json(tiny_vae_config()), at::TensorOptions());
  model->eval();
  at::NoGradGuard no_grad;
  const at::Tensor images = at::rand({5, 3, 16, 16}) * 2 - 1;
  const at::Tensor latents = at::randn({5, 4, 8, 8});
  const vae::LatentDistribution whole = model->encode(images);
  const at::Tensor decoded = model->decode(latents);
  for (int64_t n : {1, 2, 4}) {
    model->set_slice_size(n);
    const std::string tag = " (slices of " + std::to_string(n) + ")";
    // Per-image computations; only the summation order inside oneDNN's convolutions changes with the batch
    // size (measured: 2e-6 on values up to 1.6), so equal to float32 rounding: 1e-5 + 1e-5|b|.
    EXPECT_TRUE(close_elementwise("mean" + tag, model->encode(images).mean, whole.mean, 1e-5, 1e-5));
    EXPECT_TRUE(close_elementwise("logvar" + tag, model->encode(images).logvar, whole.logvar, 1e-5, 1e-5));
    EXPECT_TRUE(close_elementwise("decoded" + tag, model->decode(latents), decoded, 1e-5, 1e-5));
  }
  EXPECT_THROW(model->set_slice_size(-1), std::invalid_argument);
}

TEST(VaeModel, GradientsFlowAndMatchFiniteDifferences) {
  // No-grad inference works in place; with grad the same numbers and a correct gradient (float64, central
  // differences along a random direction: agreement to ~1e-8 relative).
  vae::AutoencoderKL m(vae::AutoencoderKlConfig::from_json(tiny_vae_config()), at::TensorOptions().dtype(at::kDouble));
  m->eval();
  const at::Tensor z0 = at::randn({2, 4, 4, 4}, at::kDouble), w = at::randn({2, 3, 8, 8}, at::kDouble);
  const at::Tensor v = at::randn_like(z0);
  at::Tensor z = z0.clone().requires_grad_(true);
  const at::Tensor loss = (m->decode(z) * w).sum() + m->encode(m->decode(z)).mean.square().sum();
  loss.backward();
  auto f = [&](const at::Tensor& zz) {
    at::NoGradGuard no_grad;
    return ((m->decode(zz) * w).sum() + m->encode(m->decode(zz)).mean.square().sum()).item<double>();
  };
  EXPECT_TRUE(close_elementwise("loss, grad vs no-grad path", at::scalar_tensor(f(z0), at::kDouble), loss.detach(), 1e-12, 1e-12));
  const double eps = 1e-5;
  const double fd = (f(z0 + eps * v) - f(z0 - eps * v)) / (2 * eps);
  const double ad = (z.grad() * v).sum().item<double>();
  EXPECT_TRUE(close_elementwise("directional derivative", at::scalar_tensor(ad, at::kDouble), at::scalar_tensor(fd, at::kDouble), 1e-7, 1e-6));
}

TEST(VaeModel, ForceUpcastRunsHalfPrecisionRequestsInFloat32) {
  const fs::path dir = scratch_dir("vae_upcast");
  json cfg = tiny_vae_config();
  cfg["force_upcast"] = true;
  write_vae(dir, cfg);
  for (auto requested : {at::kBFloat16, at::kHalf}) {
    vae::VaeOptions opts;
    opts.dtype = requested;
    vae::AutoencoderKL up = vae::load_autoencoder_kl(dir, opts);
    EXPECT_EQ(up->dtype(), at::kFloat);
    EXPECT_EQ(up->encode(at::zeros({1, 3, 8, 8}, at::kBFloat16)).mean.scalar_type(), at::kFloat);
  }
  cfg["force_upcast"] = false;
  write_json(dir / "config.json", cfg);
  vae::VaeOptions opts;
  opts.dtype = at::kBFloat16;
  vae::AutoencoderKL bf16 = vae::load_autoencoder_kl(dir, opts);
  EXPECT_EQ(bf16->dtype(), at::kBFloat16);
  vae::AutoencoderKL f32 = vae::load_autoencoder_kl(dir);
  at::NoGradGuard no_grad;
  const at::Tensor images = at::rand({2, 3, 16, 16}) * 2 - 1;
  // bfloat16 keeps 8 significant bits: the tiny network's output stays within a few percent (Bf16Tolerance).
  EXPECT_TRUE(close_maxnorm("bf16 reconstruction", bf16->forward(images), f32->forward(images), 6e-2, 1e-6));
  fs::remove_all(dir);
}

TEST(VaeModel, LatentNormalisationAndSampling) {
  json cfg = tiny_vae_config();
  const at::Tensor z = at::randn({2, 4, 3, 3});
  {
    vae::AutoencoderKL m(vae::AutoencoderKlConfig::from_json(cfg), at::TensorOptions());
    EXPECT_TRUE(close_elementwise("z * sf", m->scale_latents(z), z * 0.5, 0, 1e-7));
    EXPECT_TRUE(close_elementwise("round trip", m->unscale_latents(m->scale_latents(z)), z, 1e-6, 1e-6));
  }
  cfg["shift_factor"] = 0.25;
  {
    vae::AutoencoderKL m(vae::AutoencoderKlConfig::from_json(cfg), at::TensorOptions());
    EXPECT_TRUE(close_elementwise("(z - shift) * sf", m->scale_latents(z), (z - 0.25) * 0.5, 1e-7, 1e-7));
    EXPECT_TRUE(close_elementwise("round trip", m->unscale_latents(m->scale_latents(z)), z, 1e-6, 1e-6));
  }
  cfg.erase("shift_factor");
  cfg["latents_mean"] = {0.1, -0.2, 0.3, 0.0};
  cfg["latents_std"] = {2.0, 0.5, 1.0, 4.0};
  {
    vae::AutoencoderKL m(vae::AutoencoderKlConfig::from_json(cfg), at::TensorOptions());
    const at::Tensor mean = at::tensor({0.1, -0.2, 0.3, 0.0}).to(at::kFloat).view({1, 4, 1, 1});
    const at::Tensor stdv = at::tensor({2.0, 0.5, 1.0, 4.0}).to(at::kFloat).view({1, 4, 1, 1});
    EXPECT_TRUE(close_elementwise("(z - mean) * sf / std", m->scale_latents(z), (z - mean) * 0.5 / stdv, 1e-6, 1e-6));
    EXPECT_TRUE(close_elementwise("round trip", m->unscale_latents(m->scale_latents(z)), z, 1e-6, 1e-6));

    at::NoGradGuard no_grad;
    m->eval();
    const at::Tensor images = at::rand({2, 3, 8, 8});
    const vae::LatentDistribution post = m->encode(images);
    EXPECT_TRUE(close_elementwise("std = exp(logvar/2)", post.std, at::exp(0.5 * post.logvar), 1e-7, 1e-7));
    EXPECT_LE(post.logvar.max().item<double>(), 20.0);
    at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(7), g2 = at::make_generator<at::CPUGeneratorImpl>(7);
    const at::Tensor noise = at::randn(post.mean.sizes(), g2, post.mean.options());
    EXPECT_TRUE(close_elementwise("sample", post.sample(g1), post.mean + post.std * noise, 1e-7, 1e-7));
    EXPECT_TRUE(close_elementwise("encode_scaled", m->encode_scaled(images), m->scale_latents(post.mean), 1e-7, 1e-7));
  }
}

TEST(VaeModel, InputShapesAreChecked) {
  vae::AutoencoderKL m(vae::AutoencoderKlConfig::from_json(tiny_vae_config()), at::TensorOptions());
  const std::string e1 = error_of([&] { m->encode(at::zeros({1, 4, 8, 8})); });
  EXPECT_TRUE(contains(e1, "images must be [B,3,H,W], got [1, 4, 8, 8]")) << e1;
  const std::string e2 = error_of([&] { m->decode(at::zeros({1, 3, 8, 8})); });
  EXPECT_TRUE(contains(e2, "latents must be [B,4,h,w]")) << e2;
}

// --------------------------------------------------------------------------------------------------- CLIP

json tiny_text_config() {
  return json{{"architectures", {"CLIPTextModel"}},
              {"hidden_size", 8},
              {"intermediate_size", 12},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 2},
              {"max_position_embeddings", 10},
              {"vocab_size", 50},
              {"hidden_act", "quick_gelu"},
              {"eos_token_id", 2},
              {"projection_dim", 6},
              {"transformers_version", "5.23.0"}};
}

clip::ClipTextModel write_text_encoder(const fs::path& dir, const json& config, bool projection,
                                       const std::function<void(NamedTensors&)>& edit = {}) {
  fs::create_directories(dir);
  write_json(dir / "config.json", config);
  clip::ClipTextModel model(clip::ClipTextConfig::from_json(config), projection, at::TensorOptions());
  NamedTensors t = named(*model);
  if (edit) edit(t);
  prefdiff::model_io::write_safetensors(dir / "model.safetensors", t);
  return model;
}

at::Tensor tiny_ids() {
  // BOS 48, words, EOS 49 (the largest id), padding with EOS; the last row has no EOS at all.
  return at::tensor({48, 5, 7, 49, 49, 49, 49, 48, 30, 31, 32, 33, 49, 49, 48, 2, 9, 9, 9, 9, 9}, at::kLong).view({3, 7});
}

TEST(ClipLoading, ReleasedUnprefixedAndOldPositionIdNamesLoadTheSameModel) {
  const fs::path root = scratch_dir("clip_names");
  clip::ClipTextModel written = write_text_encoder(root / "text_encoder", tiny_text_config(), false);
  // transformers 5 save_pretrained: no "text_model." prefix; transformers < 4.31: a persistent position_ids.
  write_text_encoder(root / "unprefixed", tiny_text_config(), false, [&](NamedTensors& t) {
    t = named(*written);
    for (auto& nt : t) nt.first = nt.first.substr(std::string("text_model.").size());
    t.emplace_back("embeddings.position_ids", at::arange(10).view({1, 10}));
  });
  write_text_encoder(root / "old", tiny_text_config(), false, [&](NamedTensors& t) {
    t = named(*written);
    t.emplace_back("text_model.embeddings.position_ids", at::arange(10).view({1, 10}));
  });
  clip::ClipTextModel a = clip::load_clip_text_model(root);  // pipeline root -> text_encoder/
  clip::ClipTextModel b = clip::load_clip_text_model(root / "unprefixed");
  clip::ClipTextModel c = clip::load_clip_text_model(root / "old");
  expect_same_parameters(*written, *a);
  expect_same_parameters(*written, *b);
  expect_same_parameters(*written, *c);
  EXPECT_FALSE(a->is_training());
  fs::remove_all(root);
}

TEST(ClipLoading, MissingMisshapedUnexpectedTensorsAndMissingConfigKeysAreNamed) {
  const fs::path dir = scratch_dir("clip_bad");
  write_text_encoder(dir, tiny_text_config(), false, [](NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [](const auto& nt) { return nt.first == "text_model.final_layer_norm.bias"; }),
            t.end());
    for (auto& nt : t)
      if (nt.first == "text_model.encoder.layers.1.mlp.fc1.weight") nt.second = at::zeros({13, 8});
    t.emplace_back("text_model.encoder.layers.2.mlp.fc1.weight", at::zeros({12, 8}));
  });
  const std::string m = error_of([&] { clip::load_clip_text_model(dir); });
  EXPECT_TRUE(contains(m, "cannot load CLIPTextModel (" + (dir / "config.json").string() + ") from '" +
                              (dir / "model.safetensors").string() + "': 3 problem(s)")) << m;
  EXPECT_TRUE(contains(m, "missing tensor 'text_model.final_layer_norm.bias' [8]")) << m;
  EXPECT_TRUE(contains(m, "tensor 'text_model.encoder.layers.1.mlp.fc1.weight' has shape [13,8] in 'model.safetensors' "
                          "but the model expects [12,8]")) << m;
  EXPECT_TRUE(contains(m, "unexpected tensor 'text_model.encoder.layers.2.mlp.fc1.weight' in 'model.safetensors'")) << m;

  json cfg = tiny_text_config();
  cfg.erase("num_hidden_layers");
  cfg["hidden_act"] = "relu";
  cfg["num_attention_heads"] = 3;
  write_json(dir / "config.json", cfg);
  const std::string c = error_of([&] { clip::load_clip_text_model(dir); });
  EXPECT_TRUE(contains(c, (dir / "config.json").string() + ": 3 problem(s) in the CLIP text encoder config")) << c;
  EXPECT_TRUE(contains(c, "'num_hidden_layers' is missing")) << c;
  EXPECT_TRUE(contains(c, "'hidden_act' is \"relu\"")) << c;
  EXPECT_TRUE(contains(c, "'hidden_size' (8) is not a multiple of num_attention_heads (3)")) << c;

  const std::string none = error_of([&] { clip::load_clip_text_model(dir / "nowhere"); });
  EXPECT_TRUE(contains(none, "no model found at")) << none;
  fs::remove_all(dir);
}

TEST(ClipLoading, ProjectionComesFromArchitecturesOrTheWeights) {
  const fs::path dir = scratch_dir("clip_proj");
  json cfg = tiny_text_config();
  cfg["architectures"] = {"CLIPTextModelWithProjection"};
  write_text_encoder(dir, cfg, true);
  EXPECT_TRUE(clip::load_clip_text_model(dir)->has_projection());
  cfg.erase("architectures");
  write_json(dir / "config.json", cfg);
  EXPECT_TRUE(clip::load_clip_text_model(dir)->has_projection());  // text_projection.weight is in the file
  const std::string m = error_of([&] { clip::load_clip_text_model(dir, {}, "text_encoder", false); });
  EXPECT_TRUE(contains(m, "unexpected tensor 'text_projection.weight'")) << m;
  fs::remove_all(dir);
}

TEST(ClipText, EosPoolingRulesAndTokenChecks) {
  json cfg = tiny_text_config();
  clip::ClipTextModel legacy(clip::ClipTextConfig::from_json(cfg), false, at::TensorOptions());
  cfg["eos_token_id"] = 49;
  clip::ClipTextModel by_id(clip::ClipTextConfig::from_json(cfg), false, at::TensorOptions());
  at::NoGradGuard no_grad;
  const at::Tensor ids = tiny_ids();
  // Legacy: position of the largest id (first one). eos_token_id: first position of 49, 0 when absent.
  EXPECT_TRUE(at::equal(legacy->forward(ids).pooled_index, at::tensor({3, 5, 0}, at::kLong)));
  EXPECT_TRUE(at::equal(by_id->forward(ids).pooled_index, at::tensor({3, 5, 0}, at::kLong)));
  // A row without EOS (tokenized without special tokens): legacy pools at its largest id, the id rule at 0.
  const at::Tensor no_eos = at::tensor({5, 7, 30, 9, 9, 9, 9}, at::kLong).view({1, 7});
  EXPECT_EQ(legacy->forward(no_eos).pooled_index[0].item<int64_t>(), 2);
  EXPECT_EQ(by_id->forward(no_eos).pooled_index[0].item<int64_t>(), 0);
  const clip::TextEncoderOutput out = legacy->forward(ids);
  EXPECT_TRUE(close_elementwise("pooler row 1 = last_hidden_state[1, 5]", out.pooler_output[1], out.last_hidden_state[1][5],
                                1e-7, 1e-7));

  const std::string e1 = error_of([&] { legacy->forward(at::full({1, 3}, 50, at::kLong)); });
  EXPECT_TRUE(contains(e1, "token ids must be in [0, 50), got [50, 50]")) << e1;
  const std::string e2 = error_of([&] { legacy->forward(at::zeros({1, 11}, at::kLong)); });
  EXPECT_TRUE(contains(e2, "sequence length 11 is outside 1..10")) << e2;
  const std::string e3 = error_of([&] { legacy->forward(at::zeros({1, 3}, at::kFloat)); });
  EXPECT_TRUE(contains(e3, "input_ids must be an integer tensor")) << e3;
}

TEST(ClipText, AttentionMaskCombinesWithTheCausalMask) {
  clip::ClipTextModel m(clip::ClipTextConfig::from_json(tiny_text_config()), false, at::TensorOptions());
  at::NoGradGuard no_grad;
  const at::Tensor ids = tiny_ids();
  const clip::TextEncoderOutput plain = m->forward(ids, {}, true);
  // All ones: the same as no mask.
  EXPECT_TRUE(close_elementwise("all-ones mask", m->forward(ids, at::ones_like(ids)).last_hidden_state,
                                plain.last_hidden_state, 1e-6, 1e-6));
  // Right padding: positions before the padding see only earlier tokens anyway (causal), so they are unchanged.
  at::Tensor mask = at::ones_like(ids);
  mask.narrow(1, 5, 2).zero_();
  const at::Tensor padded = m->forward(ids, mask).last_hidden_state;
  EXPECT_TRUE(close_elementwise("right-padded, valid positions", padded.narrow(1, 0, 5),
                                plain.last_hidden_state.narrow(1, 0, 5), 1e-6, 1e-6));
  // Left padding masks a query's only keys for the first positions: no NaN (sdpa's fully-masked rows are 0).
  at::Tensor left = at::ones_like(ids);
  left.narrow(1, 0, 2).zero_();
  EXPECT_TRUE(at::isfinite(m->forward(ids, left).last_hidden_state).all().item<bool>());
  const std::string e = error_of([&] { m->forward(ids, at::ones({3, 6}, at::kLong)); });
  EXPECT_TRUE(contains(e, "attention_mask must have the shape of input_ids")) << e;
}

TEST(ClipText, HalfPrecisionStaysCloseToFloat32) {
  clip::ClipTextModel f32(clip::ClipTextConfig::from_json(tiny_text_config()), true, at::TensorOptions());
  at::NoGradGuard no_grad;
  const at::Tensor ids = tiny_ids();
  const clip::TextEncoderOutput ref = f32->forward(ids);
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    clip::ClipTextModel low(clip::ClipTextConfig::from_json(tiny_text_config()), true, at::TensorOptions().dtype(dtype));
    auto params = low->named_parameters(true);
    for (const auto& item : f32->named_parameters(true)) params[item.key()].copy_(item.value());
    const clip::TextEncoderOutput out = low->forward(ids);
    EXPECT_EQ(out.last_hidden_state.scalar_type(), dtype);
    const std::string tag = dtype == at::kHalf ? "float16" : "bfloat16";
    // bfloat16 keeps 8 significant bits, float16 11: a few percent at most after two layers (Bf16Tolerance).
    EXPECT_TRUE(close_maxnorm(tag + " last_hidden_state", out.last_hidden_state, ref.last_hidden_state, 6e-2, 1e-6));
    EXPECT_TRUE(close_maxnorm(tag + " text_embeds", out.text_embeds, ref.text_embeds, 6e-2, 1e-6));
  }
}

TEST(ClipText, PromptEmbedArgumentsAreChecked) {
  clip::ClipTextModel plain(clip::ClipTextConfig::from_json(tiny_text_config()), false, at::TensorOptions());
  const at::Tensor ids = tiny_ids();
  at::NoGradGuard no_grad;
  const std::string e1 = error_of([&] { clip::sd15_prompt_embeds(plain, ids, 3); });
  EXPECT_TRUE(contains(e1, "clip_skip selects hidden_states[-4], but the encoder has 3")) << e1;
  const std::string e2 = error_of([&] { clip::sdxl_prompt_embeds(nullptr, plain, ids, ids); });
  EXPECT_TRUE(contains(e2, "text_encoder_2 must be a CLIPTextModelWithProjection")) << e2;
  // clip_skip 1 = final_layer_norm(hidden_states[-2]).
  const clip::TextEncoderOutput out = plain->forward(ids, {}, true);
  EXPECT_TRUE(close_elementwise("clip_skip 1", clip::sd15_prompt_embeds(plain, ids, 1),
                                plain->text_model->final_layer_norm->forward(out.hidden_states[1]), 1e-7, 1e-7));
}

json tiny_vision_config() {
  return json{{"hidden_size", 8}, {"intermediate_size", 16}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
              {"image_size", 8},  {"patch_size", 4},         {"hidden_act", "gelu"},   {"projection_dim", 5}};
}

TEST(ClipVision, UnprefixedFilesLoadAndPixelShapesAreChecked) {
  const fs::path dir = scratch_dir("clip_vision");
  fs::create_directories(dir);
  json cfg = tiny_vision_config();
  cfg["architectures"] = {"CLIPVisionModelWithProjection"};
  write_json(dir / "config.json", cfg);
  clip::ClipVisionModel written(clip::ClipVisionConfig::from_json(cfg), true, at::TensorOptions());
  NamedTensors t = named(*written);
  for (auto& nt : t)
    if (nt.first.rfind("vision_model.", 0) == 0) nt.first = nt.first.substr(13);
  prefdiff::model_io::write_safetensors(dir / "model.safetensors", t);
  clip::ClipVisionModel loaded = clip::load_clip_vision_model(dir);
  EXPECT_TRUE(loaded->has_projection());
  expect_same_parameters(*written, *loaded);
  at::NoGradGuard no_grad;
  const clip::VisionEncoderOutput out = loaded->forward(at::randn({2, 3, 8, 8}), true);
  EXPECT_EQ(out.last_hidden_state.size(1), 1 + 4);  // class token + (8/4)^2 patches
  EXPECT_EQ(out.image_embeds.size(1), 5);
  EXPECT_EQ(out.hidden_states.size(), 2u);
  const std::string e = error_of([&] { loaded->forward(at::randn({1, 3, 9, 9})); });
  EXPECT_TRUE(contains(e, "pixel_values must be [B,3,8,8], got [1, 3, 9, 9]")) << e;
  fs::remove_all(dir);
}

TEST(ClipModelConfig, LegacyConfigDictsOverrideAndTowersAreRequired) {
  json cfg = {{"projection_dim", 5},
              {"text_config", tiny_text_config()},
              {"vision_config", tiny_vision_config()},
              {"text_config_dict", {{"num_hidden_layers", 3}}}};
  clip::ClipConfig c = clip::ClipConfig::from_json(cfg);
  EXPECT_EQ(c.text.num_hidden_layers, 3);
  EXPECT_EQ(c.vision.patch_size, 4);
  cfg["vision_config"].erase("patch_size");
  const std::string m = error_of([&] { clip::ClipConfig::from_json(cfg, "pick/config.json"); });
  EXPECT_TRUE(contains(m, "pick/config.json: 1 problem(s) in the CLIPModel config")) << m;
  EXPECT_TRUE(contains(m, "'vision_config.patch_size' is missing")) << m;
}

TEST(OpenClipConfig, UnsupportedTowersAndOptionsAreNamed) {
  json cfg = {{"model_cfg",
               {{"embed_dim", 8},
                {"vision_cfg", {{"layers", {3, 4, 6, 3}}, {"width", 64}, {"image_size", 32}, {"patch_size", 8}}},
                {"text_cfg", {{"width", 8}, {"heads", 2}, {"layers", 1}, {"pool_type", "last"}, {"qk_norm", true}}}}}};
  const std::string m = error_of([&] { clip::ClipConfig::from_openclip_json(cfg, "hps/open_clip_config.json"); });
  EXPECT_TRUE(contains(m, "hps/open_clip_config.json: 3 problem(s) in the OpenCLIP model config")) << m;
  EXPECT_TRUE(contains(m, "'model_cfg.vision_cfg.layers' is [3,4,6,3]: ResNet vision towers are not supported")) << m;
  EXPECT_TRUE(contains(m, "'model_cfg.text_cfg.pool_type' is \"last\"")) << m;
  EXPECT_TRUE(contains(m, "'model_cfg.text_cfg.qk_norm' is true")) << m;
  const fs::path dir = scratch_dir("openclip_none");
  const std::string none = error_of([&] { clip::load_openclip_model(dir); });
  EXPECT_TRUE(contains(none, "open_clip_config.json' does not exist. HINT:")) << none;
  fs::remove_all(dir);
}

TEST(OpenClipLoading, FusedQkvRowsAndTransposedProjectionsAreMappedStrictly) {
  // A ClipModel written under OpenCLIP's names by inverting the key map, then read back through it.
  json oc = {{"embed_dim", 6},
             {"vision_cfg", {{"layers", 1}, {"width", 8}, {"head_width", 4}, {"image_size", 8}, {"patch_size", 4}}},
             {"text_cfg", {{"context_length", 7}, {"vocab_size", 50}, {"width", 8}, {"heads", 2}, {"layers", 1}}}};
  const fs::path dir = scratch_dir("openclip_map");
  write_json(dir / "open_clip_config.json", json{{"model_cfg", oc}});
  clip::ClipConfig cfg = clip::ClipConfig::from_openclip_json(oc);
  clip::ClipModel written(cfg, at::TensorOptions());
  const auto map = clip::openclip_key_map(cfg);
  std::map<std::string, at::Tensor> file;
  for (const auto& [name, t] : named(*written)) {
    const auto src = map.source(name);
    using Op = prefdiff::model_folder::TensorSource::Op;
    if (src.op == Op::kTranspose) {
      file[src.name] = t.t().contiguous();
    } else if (src.op == Op::kRowBlock) {
      at::Tensor& fused = file[src.name];
      std::vector<int64_t> shape = t.sizes().vec();
      shape[0] *= src.blocks;
      if (!fused.defined()) fused = at::zeros(shape);
      fused.narrow(0, src.block * t.size(0), t.size(0)).copy_(t);
    } else {
      file[src.name] = t;
    }
  }
  EXPECT_TRUE(file.count("visual.transformer.resblocks.0.attn.in_proj_weight"));
  EXPECT_EQ(file["visual.transformer.resblocks.0.attn.in_proj_weight"].size(0), 24);
  NamedTensors tensors(file.begin(), file.end());
  prefdiff::model_io::write_safetensors(dir / "open_clip_model.safetensors", tensors);
  clip::ClipModel loaded = clip::load_openclip_model(dir);
  expect_same_parameters(*written, *loaded);
  // A fused tensor of the wrong height names the file tensor and the model tensor it feeds.
  tensors.emplace_back("visual.extra", at::zeros({1}));
  for (auto& nt : tensors)
    if (nt.first == "transformer.resblocks.0.attn.in_proj_weight") nt.second = at::zeros({23, 8});
  std::filesystem::remove(dir / "open_clip_model.safetensors");
  prefdiff::model_io::write_safetensors(dir / "open_clip_model.safetensors", tensors);
  const std::string m = error_of([&] { clip::load_openclip_model(dir); });
  EXPECT_TRUE(contains(m, "tensor 'transformer.resblocks.0.attn.in_proj_weight' has shape [23,8] in "
                          "'open_clip_model.safetensors' but the model expects [24,8] (for the model's "
                          "'text_model.encoder.layers.0.self_attn.")) << m;
  EXPECT_TRUE(contains(m, "unexpected tensor 'visual.extra'")) << m;
  fs::remove_all(dir);
}

TEST(AestheticHeadLoading, MissingLayersAndWrongInputsAreNamed) {
  const fs::path dir = scratch_dir("aesthetic");
  clip::AestheticHead head(32, at::TensorOptions());
  NamedTensors t = named(*head);
  ASSERT_EQ(t.size(), 10u);  // layers.{0,2,4,6,7}.{weight,bias}
  EXPECT_EQ(t.back().first, "layers.7.bias");
  t.pop_back();
  prefdiff::model_io::write_safetensors(dir / "head.safetensors", t);
  const std::string m = error_of([&] { clip::load_aesthetic_head(dir / "head.safetensors"); });
  EXPECT_TRUE(contains(m, "missing tensor 'layers.7.bias' [1]")) << m;
  const std::string e = error_of([&] { head->forward(at::zeros({2, 31})); });
  EXPECT_TRUE(contains(e, "expects CLIP image embeddings [B,32]")) << e;
  fs::remove_all(dir);
}

TEST(EncoderStructure, RealSd15ConfigsGiveDiffusersAndTransformersParameterCounts) {
  // Built on the meta device (no memory); counts from diffusers' AutoencoderKL / transformers' CLIPTextModel
  // constructed from the same files: 83,653,863 parameters in 248 tensors; 123,060,480 in 196.
  const fs::path fixtures = fs::path(PREFDIFF_SOURCE_DIR) / "tests" / "fixtures" / "configs";
  const auto meta = at::TensorOptions().device(at::kMeta);
  vae::AutoencoderKlConfig vc = vae::AutoencoderKlConfig::from_json(read_json(fixtures / "sd15_vae_config.json"));
  EXPECT_EQ(vc.downscale_factor(), 8);
  vae::AutoencoderKL v(vc, meta);
  clip::ClipTextModel t(clip::ClipTextConfig::from_json(read_json(fixtures / "sd15_text_encoder_config.json")), false, meta);
  EXPECT_TRUE(t->config().pool_at_argmax);
  auto count = [](torch::nn::Module& m) {
    int64_t n = 0;
    for (const auto& p : m.parameters()) n += p.numel();
    return std::pair<int64_t, size_t>(n, m.parameters().size());
  };
  EXPECT_EQ(count(*v), (std::pair<int64_t, size_t>(83653863, 248)));
  EXPECT_EQ(count(*t), (std::pair<int64_t, size_t>(123060480, 196)));
}

}  // namespace
