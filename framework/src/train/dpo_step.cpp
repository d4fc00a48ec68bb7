#include "prefdiff/train/dpo_step.hpp"

#include <torch/torch.h>

#include "prefdiff/diffusion/noise_schedule.hpp"

namespace prefdiff {
namespace {

std::vector<double> to_doubles(const at::Tensor& values) {
  const at::Tensor host = values.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(host.data_ptr<double>(), host.data_ptr<double>() + host.numel());
}

// Conditions for the doubled batch (winners first): the prompt's pooled embedding twice, each image's ids.
std::optional<AddedConditions> doubled(const std::optional<AddedConditions>& added, const at::Tensor& loser_time_ids) {
  if (!added) return std::nullopt;
  const at::Tensor loser_ids = loser_time_ids.defined() ? loser_time_ids : added->time_ids;
  return AddedConditions{added->text_embeds.repeat({2, 1}), torch::cat({added->time_ids, loser_ids})};
}

}  // namespace

NoisedPairs add_noise(const diffusion::NoiseSchedule& schedule, const DpoBatch& batch) {
  const int64_t pairs = batch.latents_w.size(0);
  TORCH_CHECK(batch.latents_l.sizes() == batch.latents_w.sizes(), "winner and loser latents differ in shape");
  TORCH_CHECK(batch.timesteps.numel() == pairs && batch.noise.size(0) == pairs,
              "one timestep and one noise sample per pair expected");
  // Winners first, then losers; both halves share t and noise (train.py: chunk(2)[0].repeat(2)).
  const at::Tensor latents = torch::cat({batch.latents_w, batch.latents_l});
  const at::Tensor noise = batch.noise.repeat({2, 1, 1, 1});
  NoisedPairs out;
  out.timesteps = batch.timesteps.repeat({2});
  out.text = batch.encoder_hidden_states.repeat({2, 1, 1});
  out.added = doubled(batch.added, batch.loser_time_ids);
  out.noisy = schedule.add_noise(latents, noise, out.timesteps);
  out.target = schedule.target(latents, noise, out.timesteps).to(torch::kFloat32);
  return out;
}

Predictions predict(Backbone& policy, Backbone* reference, const NoisedPairs& in, bool error_inner_products) {
  Predictions out;
  // Per-image mean squared error over C,H,W, in fp32 whatever the model's dtype.
  out.model_pred = policy.forward(in.noisy, in.timesteps, in.text, in.added);
  const at::Tensor error = out.model_pred.to(torch::kFloat32) - in.target;
  out.model_mse = error.pow(2).mean({1, 2, 3});
  if (error_inner_products) {  // <e_w,e_l>/D: the same fp32 elementwise product and mean as the MSE
    const std::vector<at::Tensor> halves = error.detach().chunk(2);
    out.error_wl = (halves[0] * halves[1]).mean({1, 2, 3});
  }
  if (reference == nullptr) return out;  // reference-free objectives: no reference forward at all
  torch::NoGradGuard no_grad;
  out.ref_pred = reference->forward(in.noisy.to(reference->dtype()), in.timesteps, in.text.to(reference->dtype()),
                                    in.added ? std::optional<AddedConditions>(AddedConditions{
                                                   in.added->text_embeds.to(reference->dtype()),
                                                   in.added->time_ids.to(reference->dtype())})
                                             : std::nullopt);
  out.ref_mse = (out.ref_pred.to(torch::kFloat32) - in.target).pow(2).mean({1, 2, 3});
  return out;
}

ObjectiveInputs to_objective_inputs(const Predictions& p, const DpoBatch& batch, int64_t step, uint64_t global_pairs) {
  const int64_t pairs = batch.latents_w.size(0);
  // One device-to-host copy (one sync) for what the objective reads: model MSEs, reference MSEs, timesteps
  // (integers below 2^24, exact in float32), <e_w,e_l>/D; the optional parts only when they were computed.
  std::vector<at::Tensor> parts{p.model_mse.detach()};
  if (p.ref_mse.defined()) parts.push_back(p.ref_mse);
  parts.push_back(batch.timesteps.to(p.model_mse.device(), torch::kFloat32));
  if (p.error_wl.defined()) parts.push_back(p.error_wl);
  const std::vector<double> host = to_doubles(torch::cat(parts));
  auto next = host.begin();
  auto take = [&](std::vector<double>& into) {
    into.assign(next, next + pairs);
    next += pairs;
  };
  ObjectiveInputs errors;
  take(errors.model_w);
  take(errors.model_l);
  if (p.ref_mse.defined()) {
    take(errors.ref_w);
    take(errors.ref_l);
  }
  take(errors.timestep);
  if (p.error_wl.defined()) {  // <e_w,e_w>/D and <e_l,e_l>/D are the MSEs themselves (objective.h)
    take(errors.error_wl);
    errors.error_ww = errors.model_w;
    errors.error_ll = errors.model_l;
  }
  errors.step = step;
  errors.global_count = global_pairs;
  return errors;
}

void backward_surrogate(const at::Tensor& model_mse, const ObjectiveOutputs& objective, double grad_scale) {
  std::vector<double> coefficients(objective.dloss_dmodel_w);
  coefficients.insert(coefficients.end(), objective.dloss_dmodel_l.begin(), objective.dloss_dmodel_l.end());
  const at::Tensor c = torch::tensor(coefficients, torch::kFloat64).mul(grad_scale).to(model_mse.device(), torch::kFloat32);
  (c * model_mse).sum().backward();
}

void DpoStepResult::summarize() {
  const size_t pairs = objective.loss.size();
  loss = margin = implicit_accuracy = 0.0;
  for (size_t i = 0; i < pairs; ++i) {
    loss += objective.loss[i];
    margin += objective.margin[i];
    implicit_accuracy += objective.margin[i] > 0.0 ? 1.0 : 0.0;
  }
  loss /= static_cast<double>(pairs);
  margin /= static_cast<double>(pairs);
  implicit_accuracy /= static_cast<double>(pairs);
}

DpoStep::DpoStep(Backbone& policy, Backbone& reference, const diffusion::NoiseSchedule& schedule,
                 ObjectiveSet& objectives)
    : DpoStep(policy, &reference, schedule, objectives) {}

DpoStep::DpoStep(Backbone& policy, Backbone* reference, const diffusion::NoiseSchedule& schedule,
                 ObjectiveSet& objectives)
    : policy_(policy), reference_(reference), schedule_(schedule), objectives_(objectives) {
  TORCH_CHECK(reference_ != nullptr || !objectives_.needs_reference(),
              "DpoStep without a reference model, but an objective reads ref_w/ref_l (not PD_CAP_REFERENCE_FREE)");
}

DpoStepResult DpoStep::train(const DpoBatch& batch, double grad_scale, int64_t step, uint64_t global_pairs,
                             bool keep_tensors) {
  return run(batch, grad_scale, step, global_pairs, keep_tensors);
}

DpoStepResult DpoStep::evaluate(const DpoBatch& batch, int64_t step, uint64_t global_pairs) {
  torch::NoGradGuard no_grad;
  return run(batch, std::nullopt, step, global_pairs, false);
}

DpoStepResult DpoStep::run(const DpoBatch& batch, std::optional<double> grad_scale, int64_t step,
                           uint64_t global_pairs, bool keep_tensors) {
  const NoisedPairs noised = add_noise(schedule_, batch);
  const Predictions predictions = predict(policy_, reference_, noised, objectives_.needs_error_inner_products());
  DpoStepResult result;
  result.errors = to_objective_inputs(predictions, batch, step, global_pairs);
  objectives_.evaluate(result.errors, result.objective);
  result.summarize();
  if (grad_scale) backward_surrogate(predictions.model_mse, result.objective, *grad_scale);
  if (keep_tensors) {
    result.noisy_latents = noised.noisy.detach();
    result.model_pred = predictions.model_pred.detach();
    if (predictions.ref_pred.defined()) result.ref_pred = predictions.ref_pred.detach();
  }
  return result;
}

}  // namespace prefdiff
