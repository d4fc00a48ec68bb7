#include "prefdiff/train/dpo_step.hpp"

#include <torch/torch.h>

#include "prefdiff/diffusion/noise_schedule.hpp"

namespace prefdiff {

DpoStep::DpoStep(Backbone& policy, Backbone& reference, const diffusion::NoiseSchedule& schedule,
                 ObjectiveSet& objectives)
    : policy_(policy), reference_(reference), schedule_(schedule), objectives_(objectives) {}

DpoStepResult DpoStep::train(const DpoBatch& batch, double grad_scale, int64_t step, uint64_t global_pairs,
                             bool keep_tensors) {
  return run(batch, grad_scale, step, global_pairs, keep_tensors);
}

DpoStepResult DpoStep::evaluate(const DpoBatch& batch, int64_t step, uint64_t global_pairs) {
  torch::NoGradGuard no_grad;
  return run(batch, std::nullopt, step, global_pairs, false);
}

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

DpoStepResult DpoStep::run(const DpoBatch& batch, std::optional<double> grad_scale, int64_t step,
                           uint64_t global_pairs, bool keep_tensors) {
  const int64_t pairs = batch.latents_w.size(0);
  TORCH_CHECK(batch.latents_l.sizes() == batch.latents_w.sizes(), "winner and loser latents differ in shape");
  TORCH_CHECK(batch.timesteps.numel() == pairs && batch.noise.size(0) == pairs,
              "one timestep and one noise sample per pair expected");

  // Winners first, then losers; both halves share t and noise (train.py: chunk(2)[0].repeat(2)).
  const at::Tensor latents = torch::cat({batch.latents_w, batch.latents_l});
  const at::Tensor noise = batch.noise.repeat({2, 1, 1, 1});
  const at::Tensor timesteps = batch.timesteps.repeat({2});
  const at::Tensor text = batch.encoder_hidden_states.repeat({2, 1, 1});
  const std::optional<AddedConditions> added = doubled(batch.added, batch.loser_time_ids);
  const at::Tensor noisy = schedule_.add_noise(latents, noise, timesteps);
  const at::Tensor target = schedule_.target(latents, noise, timesteps).to(torch::kFloat32);

  // Per-image mean squared error over C,H,W, in fp32 whatever the model's dtype.
  const at::Tensor model_pred = policy_.forward(noisy, timesteps, text, added);
  const at::Tensor model_mse = (model_pred.to(torch::kFloat32) - target).pow(2).mean({1, 2, 3});
  at::Tensor ref_pred, ref_mse;
  {
    torch::NoGradGuard no_grad;
    ref_pred = reference_.forward(noisy.to(reference_.dtype()), timesteps, text.to(reference_.dtype()),
                                  added ? std::optional<AddedConditions>(AddedConditions{
                                              added->text_embeds.to(reference_.dtype()),
                                              added->time_ids.to(reference_.dtype())})
                                        : std::nullopt);
    ref_mse = (ref_pred.to(torch::kFloat32) - target).pow(2).mean({1, 2, 3});
  }

  DpoStepResult result;
  // One device-to-host copy (one sync) for what the objective reads: model MSEs, reference MSEs, timesteps
  // (integers below 2^24, exact in float32).
  const std::vector<double> host = to_doubles(
      torch::cat({model_mse.detach(), ref_mse, batch.timesteps.to(model_mse.device(), torch::kFloat32)}));
  const auto part = [&](int64_t index) { return host.begin() + index * pairs; };
  result.errors.model_w.assign(part(0), part(1));
  result.errors.model_l.assign(part(1), part(2));
  result.errors.ref_w.assign(part(2), part(3));
  result.errors.ref_l.assign(part(3), part(4));
  result.errors.timestep.assign(part(4), part(5));
  result.errors.step = step;
  result.errors.global_count = global_pairs;
  objectives_.evaluate(result.errors, result.objective);

  for (int64_t i = 0; i < pairs; ++i) {
    result.loss += result.objective.loss[i];
    result.margin += result.objective.margin[i];
    result.implicit_accuracy += result.objective.margin[i] > 0.0 ? 1.0 : 0.0;
  }
  result.loss /= static_cast<double>(pairs);
  result.margin /= static_cast<double>(pairs);
  result.implicit_accuracy /= static_cast<double>(pairs);

  if (grad_scale) {
    std::vector<double> coefficients(result.objective.dloss_dmodel_w);
    coefficients.insert(coefficients.end(), result.objective.dloss_dmodel_l.begin(),
                        result.objective.dloss_dmodel_l.end());
    const at::Tensor c = torch::tensor(coefficients, torch::kFloat64).mul(*grad_scale).to(model_mse.device(), torch::kFloat32);
    (c * model_mse).sum().backward();
  }
  if (keep_tensors) {
    result.noisy_latents = noisy.detach();
    result.model_pred = model_pred.detach();
    result.ref_pred = ref_pred.detach();
  }
  return result;
}

}  // namespace prefdiff
