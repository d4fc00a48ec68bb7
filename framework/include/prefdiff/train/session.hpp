// Everything one training run holds, set up once from a validated recipe: ranks and device, the data
// (source, held-out pairs, label flips, reader), policy and reference, the objectives the recipe's
// validation built, optimizer, learning-rate schedule and EMA, and (rank 0) the run folder with metrics
// and progress. train_step() and validate() work on it; run_training() owns it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/data/flip_table.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/diffusion/noise_schedule.hpp"
#include "prefdiff/host/objective_set.hpp"
#include "prefdiff/instance/data_source.hpp"
#include "prefdiff/optim/ema.hpp"
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/optim/schedule.hpp"
#include "prefdiff/recipe/recipe.hpp"
#include "prefdiff/recipe/training_config.hpp"
#include "prefdiff/run/checkpoint.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/run/progress.hpp"
#include "prefdiff/run/run_directory.hpp"
#include "prefdiff/torch_host/distributed.hpp"
#include "prefdiff/torch_host/gradient_buckets.hpp"
#include "prefdiff/train/trainer.hpp"

namespace prefdiff {

struct TrainingSession {
  TrainingConfig config;
  TrainOptions options;
  DistributedEnv env;
  std::unique_ptr<DataParallelGroup> group;
  c10::Device device = c10::Device(c10::kCPU);

  // Data: the [data] source, its held-out pairs (attribute heldout_shards), the noise decision, the reader.
  std::unique_ptr<instance::DataSource> source, held_out;
  std::unique_ptr<data::FlipTable> flips;
  std::unique_ptr<data::PairReader> reader;

  // The policy (trained) and the frozen reference. With LoRA the reference becomes the policy with its
  // adapters switched off, and `parameters` only the adapters. `reference` is null when the recipe's
  // objectives need none (needs_reference).
  std::unique_ptr<Backbone> policy, reference;
  // What the objectives read beyond the policy's MSEs (ABI 1.1), decided once from the objective set:
  // false when every objective declares PD_CAP_REFERENCE_FREE (no reference is built or run).
  bool needs_reference = true;
  // Some objective declares PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: the step computes <e_w,e_l>/D per pair.
  bool needs_error_inner_products = false;
  std::vector<at::Tensor> parameters;  // what the optimizer updates
  diffusion::NoiseSchedule schedule;
  ObjectiveSet* objectives = nullptr;  // built by the recipe's validation
  std::unique_ptr<optim::Optimizer> optimizer;
  std::unique_ptr<optim::LrSchedule> lr_schedule;
  std::unique_ptr<optim::Ema> ema;
  // Several ranks: the gradient all-reduce runs in buckets overlapped with backward (declared after the group
  // and the policy, whose parameters it hooks, so that it goes first).
  std::unique_ptr<GradientBuckets> gradient_buckets;

  // Rank 0 writes the run folder; every rank keeps metrics (reduced across ranks per window).
  std::unique_ptr<run::RunDirectory> run;
  std::unique_ptr<run::MetricsSink> metrics;
  std::unique_ptr<run::Progress> progress;

  // Where the run stands.
  int64_t first_step = 0;  // the checkpoint step a resumed run continues from
  uint64_t epoch = 0;
  uint64_t batch_in_epoch = 0;
  int64_t skipped = 0;

  // The next batch of this rank's pairs, starting the next epoch when one ends.
  data::PairBatch next_batch();
  double epoch_fraction() const;
  uint64_t global_pairs() const;  // pairs per micro-batch over all ranks
  // Checkpoint `step` (rank 0 writes, every rank waits for it).
  void save_checkpoint(int64_t step);
  void say(const std::string& message) const;  // rank 0: a progress line or a log line
};

// Sets up a session (ranks, threads, device, data, models, optimizer, run folder) and restores the
// checkpoint when resuming. Throws with a message naming what and where.
std::unique_ptr<TrainingSession> open_session(const Recipe& recipe, PluginRegistry& registry, const TrainOptions& options);

}  // namespace prefdiff
