// A batch of pairs from the reader as device tensors for the DPO step, with each pair's timestep and
// noise drawn from (seed, epoch, pair id): the same pair gets the same t and noise on whichever rank reads
// it, so N ranks reproduce one process with the global batch, and a resumed run the uninterrupted one.
#pragma once

#include <cstdint>

#include <c10/core/Device.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/data/pair_reader.hpp"
#include "prefdiff/train/dpo_step.hpp"

namespace prefdiff {

DpoBatch to_device_batch(const data::PairBatch& pairs, const Backbone& policy, uint64_t seed,
                         int64_t num_train_timesteps, c10::Device device);

}  // namespace prefdiff
