// Evaluation in the toy world (`prefdiff eval`): policy and reference sampled from identical noise,
// scored by the oracle; diversity; implicit preference accuracy on the clean held-out pairs.
#ifndef PREFDIFF_TOY_WORLD_EVALUATE_HPP
#define PREFDIFF_TOY_WORLD_EVALUATE_HPP

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/backbone.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/toy_world/eval_config.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy {

// Compares policy and reference in `world`. Samples both from the same initial noise, in the same batches,
// so a policy identical to the reference ties on every sample (win rate exactly 0.5, gain exactly 0).
// Keys of the result (flat, for tables; "policy"/"reference" suffixes where both are measured):
//   win_rate, win_rate_stderr          P(r_policy > r_ref) + 0.5 P(equal), over all sampled prompts
//   reward_gain, reward_gain_stderr    mean(r_policy - r_ref)
//   reward/policy, reward/reference    mean oracle reward
//   mode_entropy/*                     entropy (nats) of the nearest-mode histogram, mean over prompts
//   pairwise_rms/*                     RMS distance between two samples of a prompt, mean over prompts
//   best_mode_fraction/*               fraction of samples nearest to the oracle's best mode
//   off_manifold_mse/*                 mean squared distance per element to the nearest mode
//   implicit_accuracy, implicit_margin accuracy (ties half) and mean h on the clean held-out pairs, h being
//                                      the margin `objectives` compute (the first one's, with the resolved
//                                      parameters the run trained with) at optimizer step `step`
//   train_prompts/*, heldout_prompts/* win_rate and reward_gain over each prompt subset (when sampled)
//   per_prompt                         [{prompt, heldout, win_rate, reward_gain, mode_entropy/...}]
//   samples, pairs, config
nlohmann::json evaluate(Backbone& policy, Backbone& reference, const World& world, const EvalConfig& config,
                        ObjectiveSet& objectives, int64_t step = 0);

}  // namespace prefdiff::toy

#endif  // PREFDIFF_TOY_WORLD_EVALUATE_HPP
