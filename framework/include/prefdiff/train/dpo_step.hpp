// One Diffusion-DPO micro-step, exactly as SalesforceAIResearch/DiffusionDPO train.py computes it, as
// named stages that train_step() (step.cpp) calls in order: winner and loser share timestep and noise
// (add_noise); policy (with grad) and frozen reference (without) predict on the same noisy latents, and
// each image's MSE is taken in fp32, mean over C,H,W (predict); the four per-pair vectors go to the
// objective plugins as host doubles (to_objective_inputs, ObjectiveSet::evaluate); their per-pair
// gradients come back and are applied through the surrogate S = grad_scale * sum_i (g_w,i * model_w,i +
// g_l,i * model_l,i), whose gradient with respect to the policy's parameters is exactly the objective's
// (backward_surrogate). DpoStep runs the stages as one call (validation, the golden test, benchmarks).
// Only what the objectives declare is computed (ABI 1.1, docs/objectives.md "What the host provides"): no
// reference forward when every objective is reference-free (ref_w/ref_l then empty = NULL), and the error
// inner products only when one asks for them.
#pragma once

#include <optional>

#include <ATen/core/Tensor.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/host/objective_set.hpp"

namespace prefdiff {
namespace diffusion {
class NoiseSchedule;
}

struct DpoBatch {
  at::Tensor latents_w;              // [B,C,H,W], already scaled latents
  at::Tensor latents_l;              // [B,C,H,W]
  at::Tensor encoder_hidden_states;  // [B,S,X]
  std::optional<AddedConditions> added;  // SDXL: text_embeds [B,P] and the winners' time_ids [B,6]
  at::Tensor loser_time_ids;             // SDXL: the losers' time_ids [B,6]; undefined = same as winners
  at::Tensor timesteps;              // [B] int64, one per pair
  at::Tensor noise;                  // [B,C,H,W], one per pair
};

// The doubled batch (winners first, then losers) with shared t and noise, noised.
struct NoisedPairs {
  at::Tensor noisy, target, timesteps, text;
  std::optional<AddedConditions> added;
};
NoisedPairs add_noise(const diffusion::NoiseSchedule& schedule, const DpoBatch& batch);

// Predictions and per-image fp32 MSEs ([2B], winners first) of the policy (with grad) and the reference.
// ref_pred/ref_mse are undefined without a reference (reference-free objectives); error_wl ([B], detached)
// is <e_w,e_l>/D per pair, e = model_pred - target in fp32, reduced as the MSE, defined only when asked.
struct Predictions {
  at::Tensor model_pred, model_mse, ref_pred, ref_mse, error_wl;
};
// reference == nullptr: no reference forward (every objective declares PD_CAP_REFERENCE_FREE).
Predictions predict(Backbone& policy, Backbone* reference, const NoisedPairs& pairs, bool error_inner_products = false);

// The objective's inputs on the host: one device-to-host copy for model MSEs, reference MSEs (when
// predicted), timesteps and <e_w,e_l>/D (when predicted; error_ww/error_ll are then copies of model_w/model_l).
ObjectiveInputs to_objective_inputs(const Predictions& predictions, const DpoBatch& batch, int64_t step,
                                    uint64_t global_pairs);

// Backpropagates the surrogate sum_i (g_w,i * model_w,i + g_l,i * model_l,i) * grad_scale.
void backward_surrogate(const at::Tensor& model_mse, const ObjectiveOutputs& objective, double grad_scale);

struct DpoStepResult {
  ObjectiveInputs errors;      // model_w, model_l, ref_w, ref_l, error_* (per pair, fp32 computed, as doubles)
  ObjectiveOutputs objective;  // per-pair loss, gradients, margins; diagnostics
  double loss = 0.0;           // mean per-pair loss of this micro-batch
  double implicit_accuracy = 0.0;  // mean(h > 0), ties count as wrong
  double margin = 0.0;             // mean h
  // Kept only when asked (tests, debugging).
  at::Tensor noisy_latents, model_pred, ref_pred;
  void summarize();  // loss, implicit_accuracy and margin from `objective`
};

class DpoStep {
 public:
  DpoStep(Backbone& policy, Backbone& reference, const diffusion::NoiseSchedule& schedule, ObjectiveSet& objectives);
  // reference == nullptr: a reference-free step (objectives.needs_reference() must be false). The inner
  // products are computed when objectives.needs_error_inner_products().
  DpoStep(Backbone& policy, Backbone* reference, const diffusion::NoiseSchedule& schedule, ObjectiveSet& objectives);

  // Forward both models, evaluate the objectives and backpropagate the surrogate scaled by `grad_scale`
  // (1/B for a batch mean; divide further by the accumulation steps). `global_pairs` is the number of
  // pairs over all ranks in this micro-batch (batch-coupled objectives need it).
  DpoStepResult train(const DpoBatch& batch, double grad_scale, int64_t step, uint64_t global_pairs,
                      bool keep_tensors = false);
  // The same without gradients (validation).
  DpoStepResult evaluate(const DpoBatch& batch, int64_t step, uint64_t global_pairs);

 private:
  DpoStepResult run(const DpoBatch& batch, std::optional<double> grad_scale, int64_t step, uint64_t global_pairs,
                    bool keep_tensors);
  Backbone& policy_;
  Backbone* reference_;
  const diffusion::NoiseSchedule& schedule_;
  ObjectiveSet& objectives_;
};

}  // namespace prefdiff
