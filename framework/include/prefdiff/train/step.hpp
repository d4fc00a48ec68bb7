// One optimizer step of Diffusion-DPO training, top to bottom in train_step() (step.cpp), as llm.c's
// training loop: batch -> noising -> policy and reference -> per-image errors -> objective(s) -> backward
// (per micro-batch), then gradient all-reduce -> NaN policy -> clip -> optimizer -> EMA -> metrics.
#pragma once

#include <cstdint>
#include <string>

#include "prefdiff/train/session.hpp"

namespace prefdiff {

struct StepReport {
  double lr = 0.0;
  double grad_norm = 0.0;
  bool skipped = false;   // a non-finite loss or gradient, with train.nan_policy = "skip"
  std::string why_skipped;
  int64_t pairs = 0;      // pairs over all ranks
};

// Throws when a loss or gradient is not finite and train.nan_policy = "stop" (the weights untouched).
StepReport train_step(TrainingSession& s, int64_t step);

}  // namespace prefdiff
