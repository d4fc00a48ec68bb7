// Validation during training: implicit accuracy, margins, loss and the four MSEs on held-out pairs, with
// fixed t and noise so curves compare, written as eval/... rows of the metrics.
#pragma once

#include <cstdint>

#include "prefdiff/train/session.hpp"

namespace prefdiff {

// A no-op when the data source has no held-out pairs.
void validate(TrainingSession& s, int64_t step);

}  // namespace prefdiff
