// A batch of pairs from the reader as device tensors for the DPO step, with each pair's timestep and
// noise drawn from (seed, epoch, pair id): the same pair gets the same t and noise on whichever rank reads
// it, so N ranks reproduce one process with the global batch, and a resumed run the uninterrupted one.
#pragma once

#include <cstdint>
#include <stdexcept>

#include <c10/core/Device.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/train/dpo_step.hpp"

namespace prefdiff {

// A pair whose latents, embeddings or time ids hold NaN or Inf: a data fault, not a training one.
struct NonFiniteDataError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws NonFiniteDataError naming the first such pair (data set index, pair id) and tensor, with the
// command that names its shard and row. A NaN here would otherwise surface as a non-finite loss.
void check_finite(const data::PairBatch& pairs);

// check_finite(), then the tensors on `device` with each pair's timestep and noise.
DpoBatch to_device_batch(const data::PairBatch& pairs, const Backbone& policy, uint64_t seed,
                         int64_t num_train_timesteps, c10::Device device);

}  // namespace prefdiff
