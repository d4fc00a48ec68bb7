// The training step (see step.hpp and docs/training.md, "One step").
#include "prefdiff/train/step.hpp"

#include <cmath>

#include <torch/torch.h>

#include "prefdiff/optim/grad_clip.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/train/batch.hpp"
#include "prefdiff/train/dpo_step.hpp"

namespace prefdiff {
namespace {

// Averages gradients over ranks: the buckets' all-reduces launched during backward are waited for (and
// the rest launched); without buckets, one all-reduce per ~16M values after the backward.
void all_reduce_gradients(TrainingSession& s) {
  if (s.gradient_buckets) return s.gradient_buckets->finish();
  if (s.env.world_size == 1) return;
  std::vector<at::Tensor> grads;
  for (const at::Tensor& p : s.parameters)
    if (p.grad().defined()) grads.push_back(p.grad());
  s.group->all_reduce_mean(grads, 16 << 20);
}

// The micro-batch's metrics (averaged over the logging window and the ranks by the sink).
void record(run::MetricsSink& metrics, const DpoStepResult& r, double flip_fraction) {
  const size_t n = r.errors.model_w.size();
  auto mean = [n](const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    return sum / static_cast<double>(n);
  };
  metrics.add(run::metric::kLoss, r.loss);
  metrics.add(run::metric::kAccuracy, r.implicit_accuracy);
  metrics.add(run::metric::kMargin, r.margin);
  metrics.add(run::metric::kModelW, mean(r.errors.model_w));
  metrics.add(run::metric::kModelL, mean(r.errors.model_l));
  if (!r.errors.ref_w.empty()) {  // absent for reference-free objectives: no reference ran
    metrics.add(run::metric::kRefW, mean(r.errors.ref_w));
    metrics.add(run::metric::kRefL, mean(r.errors.ref_l));
  }
  for (const auto& [name, value] : r.objective.diagnostics) metrics.add(name, value);
  metrics.add("noise/flipped", flip_fraction);
}

}  // namespace

StepReport train_step(TrainingSession& s, int64_t step) {
  const LoopConfig& loop = s.config.train;
  StepReport report;
  report.lr = s.lr_schedule->lr_at(step);
  s.optimizer->set_lr(report.lr);
  s.optimizer->zero_grad();
  const double grad_scale = 1.0 / static_cast<double>(loop.batch_size * loop.grad_accum);  // the global batch mean
  double bad = 0.0;  // this rank saw a non-finite loss, or a plugin failed
  bool data_fault = false;  // ... because the batch itself held NaN or Inf
  std::vector<std::pair<DpoStepResult, double>> results;  // recorded once every rank agrees the step is good

  for (int64_t micro = 0; micro < loop.grad_accum; ++micro) {
    const data::PairBatch pairs = s.next_batch();                                              // batch
    report.pairs += static_cast<int64_t>(pairs.size()) * s.env.world_size;
    if (s.gradient_buckets) s.gradient_buckets->prepare(/*sync=*/micro + 1 == loop.grad_accum);  // overlap
    try {
      const DpoBatch batch = to_device_batch(pairs, *s.policy, s.config.run.seed,
                                             s.schedule.config().num_train_timesteps, s.device);  // + t and noise
      const NoisedPairs noised = add_noise(s.schedule, batch);                                   // noising
      const Predictions predictions =                                                          // policy and reference
          predict(*s.policy, s.reference.get(), noised, s.needs_error_inner_products);         // (null: none needed)
      DpoStepResult r;
      r.errors = to_objective_inputs(predictions, batch, step, s.global_pairs());               // per-image errors
      s.objectives->evaluate(r.errors, r.objective);                                            // objective(s)
      r.summarize();
      if (!std::isfinite(r.loss)) throw std::runtime_error("non-finite loss " + std::to_string(r.loss));
      backward_surrogate(predictions.model_mse, r.objective, grad_scale);                       // backward
      results.emplace_back(std::move(r), pairs.flip_fraction());
    } catch (const NonFiniteDataError& e) {
      bad = 1.0;
      data_fault = true;
      report.why_skipped = e.what();
    } catch (const std::exception& e) {
      bad = 1.0;
      report.why_skipped = e.what();
    }
  }

  all_reduce_gradients(s);  // all-reduce; first: the buckets' collectives precede any other in this step
  s.group->all_reduce_sum(&bad, 1);                                                             // every rank agrees
  const optim::GradNormResult norm = optim::clip_grad_norm(s.parameters, loop.grad_clip);      // clip
  report.grad_norm = norm.total_norm;
  if (bad > 0.0 || !norm.finite) {                                                              // NaN policy
    report.why_skipped = bad > 0.0 ? (report.why_skipped.empty() ? "another rank saw a non-finite loss" : report.why_skipped)
                                   : "non-finite gradient norm " + std::to_string(norm.total_norm);
    if (!loop.skip_bad_steps)
      throw std::runtime_error("step " + std::to_string(step) + ": " + report.why_skipped +
                               ". The weights were not updated." +
                               (data_fault ? std::string(" Or set train.nan_policy = \"skip\" to skip such steps")
                                           : std::string(" Set train.nan_policy = \"skip\" to skip such steps, "
                                                         "or lower optim.lr")));
    report.skipped = true;
    ++s.skipped;
    s.optimizer->zero_grad();
    s.say("step " + std::to_string(step) + " skipped: " + report.why_skipped);
  } else {
    s.optimizer->step();                                                                        // optimizer
    if (s.ema) s.ema->update();
    for (const auto& [r, flipped] : results) record(*s.metrics, r, flipped);                   // metrics
  }
  s.metrics->set(run::metric::kLr, report.lr);
  s.metrics->set(run::metric::kGradNorm, norm.total_norm);
  s.metrics->set(run::metric::kSkippedSteps, static_cast<double>(s.skipped));
  return report;
}

}  // namespace prefdiff
