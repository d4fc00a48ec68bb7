// Metrics rows to TensorBoard, under metrics.jsonl's key names.
#include "prefdiff/run/tensorboard/tensorboard_sink.hpp"

#include <algorithm>

namespace prefdiff::run {

RowSink tensorboard_sink(TensorBoardWriter& writer) {
  return [&writer](std::int64_t step, double epoch, const std::map<std::string, double>& values) {
    const std::string eval = metric::kEvalPrefix;
    std::map<std::string, double> scalars = values;
    const bool training_row = std::any_of(values.begin(), values.end(), [&](const auto& kv) {
      return kv.first.compare(0, eval.size(), eval) != 0;
    });
    if (training_row) scalars[metric::kEpoch] = epoch;
    writer.add_scalars(scalars, step);
  };
}

}  // namespace prefdiff::run
