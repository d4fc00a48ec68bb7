// The toy world's [data] keys: one table that validates recipes and documents the knobs.
#include <cmath>
#include <limits>
#include <sstream>

#include "internal.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy {
namespace {

using detail::key;

constexpr uint32_t kMin = PD_PARAM_HAS_MIN;
constexpr uint32_t kMinMax = PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX;
constexpr uint32_t kPositive = PD_PARAM_HAS_MIN | PD_PARAM_MIN_EXCLUSIVE;
using V = ValueType;

std::vector<ParamSpec> build() {
  const WorldConfig d;
  std::vector<ParamSpec> s;
  s.push_back(key("id", V::String, kDataId, "Data source; \"toy-world\" selects the synthetic world."));
  s.back().choices = {kDataId};
  s.push_back(key("seed", V::Int, d.seed, "World seed: prompts, modes and the oracle derive from it.", 0, 0, kMin));
  s.push_back(key("prompts", V::Int, d.prompts, "Number of prompts K (held-out ones included).", 2, 4096, kMinMax));
  s.push_back(key("heldout_prompts", V::Int, d.heldout_prompts,
                  "The last this-many prompts never appear in training pairs (evaluation only).", 0, 4095, kMinMax));
  s.push_back(key("modes", V::Int, d.modes, "Mixture components M per prompt.", 1, 64, kMinMax));
  s.push_back(key("latent_channels", V::Int, d.latent_channels, "Latent channels C (the UNet's in/out channels).", 1, 64, kMinMax));
  s.push_back(key("latent_size", V::Int, d.latent_size, "Latent height = width (8 or 16 for the tiny UNet).", 4, 128, kMinMax));
  s.push_back(key("embed_tokens", V::Int, d.embed_tokens, "Prompt embedding tokens S.", 1, 77, kMinMax));
  s.push_back(key("embed_dim", V::Int, d.embed_dim, "Prompt embedding width X (sets the UNet's cross_attention_dim).", 1, 4096, kMinMax));
  s.push_back(key("mode_scale", V::Float, d.mode_scale, "Per-element RMS of each mode's mean pattern.", 0, 0, kPositive));
  s.push_back(key("mode_weight_spread", V::Float, d.mode_weight_spread,
                  "Mixture weights are softmax(spread * z), z ~ N(0,1); 0 = uniform.", 0, 0, kMin));
  s.push_back(key("noise_std", V::Float, d.noise_std, "Within-mode isotropic noise sigma.", 0, 0, kPositive));
  s.push_back(key("target_offset", V::Float, d.target_offset,
                  "The oracle's target lies this many sigmas from the best mode along the shared preferred direction.", 0, 0, kMin));
  s.push_back(key("train_pairs", V::Int, d.train_pairs, "Training pairs (train prompts, round robin).", 1, 1e8, kMinMax));
  s.push_back(key("heldout_pairs", V::Int, d.heldout_pairs, "Clean held-out pairs (every prompt, oracle labels).", 1, 1e8, kMinMax));
  s.push_back(key("pair_source", V::String, d.pair_source,
                  "Where training pairs' samples come from: exact base samples or the reference model's DDIM samples."));
  s.back().choices = {"base", "reference"};
  s.push_back(key("bt_temperature", V::Float, d.bt_temperature,
                  "0: the oracle picks the winner; > 0: Bradley-Terry draw with this temperature (reward units).", 0, 0, kMin));
  s.push_back(key("pair_seed", V::Int, d.pair_seed, "Seed of the pair draws (samples and Bradley-Terry labels).", 0, 0, kMin));
  s.push_back(key("pair_sample_steps", V::Int, d.pair_sample_steps, "DDIM steps when pair_source = \"reference\".", 1, 1000, kMinMax));
  s.push_back(key("pretrain_steps", V::Int, d.pretrain_steps, "Reference pretraining steps (AdamW, epsilon loss).", 1, 1e7, kMinMax));
  s.push_back(key("pretrain_batch", V::Int, d.pretrain_batch, "Reference pretraining batch size.", 1, 65536, kMinMax));
  s.push_back(key("pretrain_lr", V::Float, d.pretrain_lr, "Peak learning rate of reference pretraining (cosine decay).", 0, 0, kPositive));
  s.push_back(key("pretrain_caption_dropout", V::Float, d.pretrain_caption_dropout,
                  "Fraction of pretraining examples conditioned on the null embedding (enables guidance).", 0, 1, kMinMax));
  s.push_back(key("pretrain_seed", V::Int, d.pretrain_seed, "Seed of reference initialisation and pretraining draws.", 0, 0, kMin));
  s.push_back(key("unet_config", V::String, "", "UNet config.json for the reference (\"\" = built-in tiny UNet)."));
  s.back().bounds |= PD_PARAM_PATH;
  s.push_back(key("cache_dir", V::String, "", "Cache root (\"\" = ${PREFDIFF_CACHE:-~/.cache/prefdiff}/toy-world)."));
  s.back().bounds |= PD_PARAM_PATH;
  return s;
}

}  // namespace

const std::vector<ParamSpec>& world_schema() {
  static const std::vector<ParamSpec> schema = build();
  return schema;
}

nlohmann::json detail::resolve_section(const nlohmann::json& section, const std::vector<ParamSpec>& schema,
                                       const std::string& where, std::vector<std::string>& problems) {
  if (!section.is_object()) {
    problems.push_back(where + ": expected a table of keys, got " + section.dump());
    return nlohmann::json();
  }
  std::vector<instance::ParamProblem> found;
  const instance::ParamSet params = instance::resolve_params(schema, given_from_json(section), {}, found);
  for (const instance::ParamProblem& p : found) problems.push_back(where + " " + p.message);
  return params_to_json(params);
}

void detail::throw_problems(const std::vector<std::string>& problems, const std::string& what) {
  if (problems.empty()) return;
  std::ostringstream msg;
  msg << problems.size() << " problem(s) in " << what << ":";
  for (const std::string& p : problems) msg << "\n  " << p;
  throw WorldError(msg.str());
}

WorldConfig WorldConfig::from_json(const nlohmann::json& section) {
  std::vector<std::string> problems;
  nlohmann::json v = detail::resolve_section(section, world_schema(), "[data]", problems);
  WorldConfig c;
  if (problems.empty()) {
    c.seed = v["seed"].get<uint64_t>();
    c.prompts = v["prompts"].get<int64_t>();
    c.heldout_prompts = v["heldout_prompts"].get<int64_t>();
    c.modes = v["modes"].get<int64_t>();
    c.latent_channels = v["latent_channels"].get<int64_t>();
    c.latent_size = v["latent_size"].get<int64_t>();
    c.embed_tokens = v["embed_tokens"].get<int64_t>();
    c.embed_dim = v["embed_dim"].get<int64_t>();
    c.mode_scale = v["mode_scale"].get<double>();
    c.mode_weight_spread = v["mode_weight_spread"].get<double>();
    c.noise_std = v["noise_std"].get<double>();
    c.target_offset = v["target_offset"].get<double>();
    c.train_pairs = v["train_pairs"].get<int64_t>();
    c.heldout_pairs = v["heldout_pairs"].get<int64_t>();
    c.pair_source = v["pair_source"].get<std::string>();
    c.bt_temperature = v["bt_temperature"].get<double>();
    c.pair_seed = v["pair_seed"].get<uint64_t>();
    c.pair_sample_steps = v["pair_sample_steps"].get<int64_t>();
    c.pretrain_steps = v["pretrain_steps"].get<int64_t>();
    c.pretrain_batch = v["pretrain_batch"].get<int64_t>();
    c.pretrain_lr = v["pretrain_lr"].get<double>();
    c.pretrain_caption_dropout = v["pretrain_caption_dropout"].get<double>();
    c.pretrain_seed = v["pretrain_seed"].get<uint64_t>();
    c.unet_config = v["unet_config"].get<std::string>();
    c.cache_dir = v["cache_dir"].get<std::string>();
    if (c.heldout_prompts >= c.prompts)
      problems.push_back("[data] heldout_prompts = " + std::to_string(c.heldout_prompts) + " leaves no training prompt (prompts = " +
                         std::to_string(c.prompts) + "); HINT: make heldout_prompts < prompts");
  }
  detail::throw_problems(problems, "the toy-world [data] section");
  return c;
}

nlohmann::json WorldConfig::to_json() const {
  return {{"id", kDataId},
          {"seed", seed},
          {"prompts", prompts},
          {"heldout_prompts", heldout_prompts},
          {"modes", modes},
          {"latent_channels", latent_channels},
          {"latent_size", latent_size},
          {"embed_tokens", embed_tokens},
          {"embed_dim", embed_dim},
          {"mode_scale", mode_scale},
          {"mode_weight_spread", mode_weight_spread},
          {"noise_std", noise_std},
          {"target_offset", target_offset},
          {"train_pairs", train_pairs},
          {"heldout_pairs", heldout_pairs},
          {"pair_source", pair_source},
          {"bt_temperature", bt_temperature},
          {"pair_seed", pair_seed},
          {"pair_sample_steps", pair_sample_steps},
          {"pretrain_steps", pretrain_steps},
          {"pretrain_batch", pretrain_batch},
          {"pretrain_lr", pretrain_lr},
          {"pretrain_caption_dropout", pretrain_caption_dropout},
          {"pretrain_seed", pretrain_seed},
          {"unet_config", unet_config},
          {"cache_dir", cache_dir}};
}

}  // namespace prefdiff::toy
