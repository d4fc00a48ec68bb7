// The evaluation's keys (torch-free, so recipe validation does not compile LibTorch).
#include "internal.hpp"
#include "prefdiff/toy_world/eval_config.hpp"

namespace prefdiff::toy {
namespace {

using detail::key;

std::vector<ParamSpec> build() {
  const EvalConfig d;
  using V = ValueType;
  constexpr uint32_t kMin = PD_PARAM_HAS_MIN, kMinMax = PD_PARAM_HAS_MIN | PD_PARAM_HAS_MAX;
  std::vector<ParamSpec> s;
  s.push_back(key("samples_per_prompt", V::Int, d.samples_per_prompt, "Samples per evaluated prompt (policy and reference each).", 2, 1e6, kMinMax));
  s.push_back(key("steps", V::Int, d.steps, "DDIM steps (eta 0).", 1, 1000, kMinMax));
  s.push_back(key("guidance_scale", V::Float, d.guidance_scale,
                  "Classifier-free guidance; <= 1 disables it. The unconditional input is the all-zero embedding.", 0, 0, kMin));
  s.push_back(key("seed", V::Int, d.seed, "Seed of the initial noise and of the held-out timesteps and noise.", 0, 0, kMin));
  s.push_back(key("prompts", V::String, d.prompts, "Prompts sampled: all, train (seen in pairs) or heldout."));
  s.back().choices = {"all", "train", "heldout"};
  s.push_back(key("batch_size", V::Int, d.batch_size, "Samples per forward pass.", 1, 1e6, kMinMax));
  s.push_back(key("heldout_pairs", V::Int, d.heldout_pairs, "Held-out pairs for implicit accuracy; 0 = all.", 0, 1e8, kMinMax));
  s.push_back(key("per_prompt", V::Bool, d.per_prompt, "Include the per-prompt breakdown."));
  return s;
}

}  // namespace

const std::vector<ParamSpec>& eval_schema() {
  static const std::vector<ParamSpec> schema = build();
  return schema;
}

EvalConfig EvalConfig::from_json(const nlohmann::json& section) {
  std::vector<std::string> problems;
  nlohmann::json v = detail::resolve_section(section, eval_schema(), "[eval]", problems);
  detail::throw_problems(problems, "the toy-world evaluation settings");
  EvalConfig c;
  c.samples_per_prompt = v["samples_per_prompt"].get<int64_t>();
  c.steps = v["steps"].get<int64_t>();
  c.guidance_scale = v["guidance_scale"].get<double>();
  c.seed = v["seed"].get<uint64_t>();
  c.prompts = v["prompts"].get<std::string>();
  c.batch_size = v["batch_size"].get<int64_t>();
  c.heldout_pairs = v["heldout_pairs"].get<int64_t>();
  c.per_prompt = v["per_prompt"].get<bool>();
  return c;
}

nlohmann::json EvalConfig::to_json() const {
  return {{"samples_per_prompt", samples_per_prompt}, {"steps", steps}, {"guidance_scale", guidance_scale},
          {"seed", seed}, {"prompts", prompts}, {"batch_size", batch_size},
          {"heldout_pairs", heldout_pairs}, {"per_prompt", per_prompt}};
}

}  // namespace prefdiff::toy
