// Mirrors the metrics rows into TensorBoard under the same tag names as metrics.jsonl ("loss",
// "rewards/accuracies", "lr", "eval/loss", ...), at the row's step:
//
//   MetricsLogger metrics(run.path(), MetricsOptions{rank == 0, run.resume_step()});
//   std::unique_ptr<TensorBoardWriter> tb;
//   if (rank == 0) {
//     tb = std::make_unique<TensorBoardWriter>(run.path(), TensorBoardOptions{run.resume_step()});
//     metrics.add_row_sink(tensorboard_sink(*tb));
//   }
//
// Every row becomes one event. "epoch" goes along with the training rows (rows with a key outside "eval/"),
// so that validation rows, which repeat the epoch of their step, do not plot it twice.
#pragma once

#include "prefdiff/run/metrics.hpp"
#include "prefdiff/run/tensorboard/tensorboard_writer.hpp"

namespace prefdiff::run {

// A RowSink that writes to `writer`, which must outlive the MetricsLogger it is given to.
RowSink tensorboard_sink(TensorBoardWriter& writer);

}  // namespace prefdiff::run
