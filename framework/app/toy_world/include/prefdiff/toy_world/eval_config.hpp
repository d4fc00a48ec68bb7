// The toy world's evaluation settings (torch-free, so recipe validation needs no LibTorch).
#ifndef PREFDIFF_TOY_WORLD_EVAL_CONFIG_HPP
#define PREFDIFF_TOY_WORLD_EVAL_CONFIG_HPP

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/instance/params.hpp"

namespace prefdiff::toy {

struct EvalConfig {
  int64_t samples_per_prompt = 32;
  int64_t steps = 20;            // DDIM steps (eta 0)
  double guidance_scale = 1.0;   // <= 1: no guidance; else CFG with the all-zero null embedding
  uint64_t seed = 0;             // initial noise and held-out timesteps/noise
  std::string prompts = "all";   // sampled prompts: "all", "train" or "heldout"
  int64_t batch_size = 256;      // samples per forward
  int64_t heldout_pairs = 0;     // held-out pairs used for implicit accuracy; 0 = all of them
  bool per_prompt = true;        // include the per-prompt breakdown

  // Keys as the fields; unknown keys and bad values are reported at once.
  static EvalConfig from_json(const nlohmann::json& section);
  nlohmann::json to_json() const;
};

const std::vector<instance::ParamSpec>& eval_schema();

}  // namespace prefdiff::toy

#endif  // PREFDIFF_TOY_WORLD_EVAL_CONFIG_HPP
