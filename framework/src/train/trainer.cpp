// `prefdiff train`: set up a session, then for every optimizer step: train_step() (step.cpp), the metrics
// window, validation, checkpoints. See docs/training.md.
#include "prefdiff/train/trainer.hpp"

#include <ATen/Context.h>

#include <chrono>
#include <cmath>

#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/train/session.hpp"
#include "prefdiff/train/step.hpp"
#include "prefdiff/train/validation.hpp"

namespace prefdiff {
namespace {
using Clock = std::chrono::steady_clock;

// Throughput and data wait over one logging window.
struct Window {
  Clock::time_point start = Clock::now();
  double wait_at_start = 0.0;
  int64_t pairs = 0;
  double seconds() const { return std::max(std::chrono::duration<double>(Clock::now() - start).count(), 1e-9); }
};

// Rank 0 writes the window's means (over the window and the ranks) and shows them; returns a new window.
Window log_window(TrainingSession& s, int64_t done, const Window& window) {
  const double seconds = window.seconds();
  s.metrics->set(run::metric::kPairsPerS, static_cast<double>(window.pairs) / seconds);
  s.metrics->set(run::metric::kDataWaitFrac, (s.reader->wait_seconds() - window.wait_at_start) / seconds);
  const auto means = s.metrics->log_window(done, s.epoch_fraction(), [&s](std::vector<double>& v) {
    s.group->all_reduce_sum(v.data(), v.size());
  });
  if (s.progress) {
    run::ProgressStats stats;
    stats.loss = means.count(run::metric::kLoss) ? means.at(run::metric::kLoss) : NAN;
    stats.accuracy = means.count(run::metric::kAccuracy) ? means.at(run::metric::kAccuracy) : NAN;
    stats.pairs_per_s = means.at(run::metric::kPairsPerS);
    s.progress->update(done, stats);
  }
  Window next;
  next.wait_at_start = s.reader->wait_seconds();
  return next;
}

}  // namespace

void run_training(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options) {
  const std::unique_ptr<TrainingSession> session = open_session(recipe, registry, options);
  TrainingSession& s = *session;
  const LoopConfig& loop = s.config.train;
  instance::rearm_exit_reporter();  // ahead of the exit handlers that set-up registered

  Window window;
  window.wait_at_start = s.reader->wait_seconds();
  int64_t updated = 0;       // steps of this process that changed the weights
  std::string last_skip_reason;
  for (int64_t step = s.first_step; step < loop.steps; ++step) {
    // LoRA dropout draws its masks from torch's generator: seeded per step and rank, a resumed run draws the same.
    if (s.config.lora.enabled() && s.config.lora.dropout > 0)
      at::manual_seed(s.config.run.seed ^ (0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(step + 1)) ^
                      (static_cast<uint64_t>(s.env.rank) << 48));
    const StepReport report = train_step(s, step);
    window.pairs += report.pairs;
    if (report.skipped)
      last_skip_reason = report.why_skipped;
    else
      ++updated;
    const int64_t done = step + 1;
    const bool checkpoint_now = (loop.checkpoint_every > 0 && done % loop.checkpoint_every == 0) || done == loop.steps;
    if (done % s.config.log.every == 0 || checkpoint_now) window = log_window(s, done, window);
    if (s.config.eval.every > 0 && done % s.config.eval.every == 0) validate(s, done);
    if (checkpoint_now) s.save_checkpoint(done);
  }
  if (s.progress) s.progress->finish();
  if (s.run) {
    s.run->update_metadata({{"end_time", run::iso8601_now()}, {"final_step", loop.steps}, {"skipped_steps", s.skipped}});
  }
  if (updated == 0 && loop.steps > s.first_step)
    throw std::runtime_error("every step trained here (steps " + std::to_string(s.first_step) + " to " +
                             std::to_string(loop.steps - 1) + ") was skipped by train.nan_policy = \"skip\": the weights never changed, so the final "
                             "checkpoint is the starting model. Last reason: " + last_skip_reason +
                             ". HINT: fix that cause (set train.nan_policy = \"stop\" to stop at the first one)");
  if (s.run) {
    s.say("done: " + s.run->path().string() + " (policy: " +
          (s.run->checkpoints().dir() / run::CheckpointStore::name_for(loop.steps) /
           (s.config.lora.enabled() ? "pytorch_lora_weights.safetensors" : "unet")).string() + ")");
  }
}

}  // namespace prefdiff
