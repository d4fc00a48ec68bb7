// Training metrics: accumulated per step (or micro-batch), averaged over the logging window and across
// ranks, written by rank 0 to `<run>/metrics.jsonl` and `<run>/metrics.csv` with TRL's key names.
//
//   MetricsLogger metrics(run.path(), MetricsOptions{rank == 0, run.resume_step()});
//   metrics.add("loss", loss); metrics.add("rewards/accuracies", acc); metrics.set("lr", lr); ...
//   if (step % log_every == 0)
//     auto means = metrics.log_window(step, epoch, [&](std::vector<double>& v) { dp.all_reduce_sum(v); });
//   metrics.write_eval(step, epoch, {{"rewards/accuracies", 0.61}, ...});   // lands as eval/...
//
// metrics.jsonl is the record (one JSON object per row); metrics.csv is a view of it whose header is the
// union of every key so far: when a new key appears, the CSV is regenerated from the JSONL with the wider
// header and atomically replaces the old one, so it is always a valid rectangular table.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace prefdiff::run {

// Key names (TRL / torchtune conventions).
namespace metric {
inline constexpr const char* kStep = "step";
inline constexpr const char* kEpoch = "epoch";
inline constexpr const char* kLoss = "loss";
inline constexpr const char* kAccuracy = "rewards/accuracies";
inline constexpr const char* kMargin = "rewards/margins";
inline constexpr const char* kModelW = "mse/model_w";
inline constexpr const char* kModelL = "mse/model_l";
inline constexpr const char* kRefW = "mse/ref_w";
inline constexpr const char* kRefL = "mse/ref_l";
inline constexpr const char* kLr = "lr";
inline constexpr const char* kGradNorm = "grad_norm";
inline constexpr const char* kAlpha = "alpha";
inline constexpr const char* kPairsPerS = "pairs_per_s";
inline constexpr const char* kDataWaitFrac = "data_wait_frac";
inline constexpr const char* kSkippedSteps = "skipped_steps";
inline constexpr const char* kEvalPrefix = "eval/";
}  // namespace metric

// Sums its argument element-wise across the data-parallel group, in place (every rank passes a vector
// of the same length; the logger guarantees that the keys line up, see log_window).
using AllReduceSum = std::function<void(std::vector<double>&)>;

// Receives every row the writer wrote, after metrics.jsonl and metrics.csv: its step, epoch and values with
// the keys as written (validation rows with their "eval/" prefix). Other outputs of the same rows, such as
// TensorBoard (tensorboard/tensorboard_sink.hpp), hang here. An exception propagates to the caller.
using RowSink = std::function<void(std::int64_t step, double epoch, const std::map<std::string, double>& values)>;

struct MetricsOptions {
  bool writer = true;  // rank 0 writes; other ranks only accumulate and take part in the reduction
  // Resuming from a checkpoint of this step: rows after it (written by the killed run past its last
  // checkpoint) and a torn last line are dropped, so the resumed run does not log steps twice. -1: new run.
  std::int64_t resume_step = -1;
  bool fsync_rows = true;  // fsync both files after each row (rows are per window, not per step)
};

// Where the trainer's metrics go. MetricsLogger writes metrics.jsonl and metrics.csv and hands every row it
// wrote to its row sinks (TensorBoard, add_row_sink); a sink of another kind implements these calls.
class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void add(const std::string& key, double value) = 0;
  virtual void set(const std::string& key, double value) = 0;
  virtual std::map<std::string, double> log_window(std::int64_t step, double epoch, const AllReduceSum& all_reduce_sum) = 0;
  virtual void write_eval(std::int64_t step, double epoch, const std::map<std::string, double>& values) = 0;
};

class MetricsLogger : public MetricsSink {
 public:
  explicit MetricsLogger(std::filesystem::path run_dir, MetricsOptions options = {});

  // Window accumulation. add(): averaged over every value added in the window on every rank.
  // set(): a gauge (lr, pairs_per_s computed from the global batch): the last value of the window; across
  // ranks the mean of each rank's last value. NaN is kept (it shows in the logs instead of vanishing).
  void add(const std::string& key, double value) override;
  void set(const std::string& key, double value) override;
  bool window_empty() const { return sums_.empty(); }
  std::vector<std::string> window_keys() const;  // sorted: the same order on every rank

  // Means of the window; with `all_reduce_sum`, over all ranks. Every rank must call it (collective) with
  // the same keys: a first two-number reduction compares a fingerprint of the key names and throws
  // RunError on a mismatch before the variable-length one is attempted. Does not clear the window.
  std::map<std::string, double> window_means(const AllReduceSum& all_reduce_sum = nullptr) const;
  void reset_window();

  // window_means(), a row written by the writer with `step` and `epoch`, then reset_window().
  std::map<std::string, double> log_window(std::int64_t step, double epoch,
                                           const AllReduceSum& all_reduce_sum = nullptr) override;

  // One row (writer only; a no-op on other ranks). Keys must not be "step" or "epoch".
  void write_row(std::int64_t step, double epoch, const std::map<std::string, double>& values);
  // Validation: the same, with "eval/" put in front of every key that lacks it; its own row.
  void write_eval(std::int64_t step, double epoch, const std::map<std::string, double>& values) override;

  // Adds a sink that sees every row written from now on (writer only: other ranks never call it).
  void add_row_sink(RowSink sink) { sinks_.push_back(std::move(sink)); }

  const std::vector<std::string>& csv_columns() const { return columns_; }  // "step", "epoch", sorted keys
  std::filesystem::path jsonl_path() const { return dir_ / "metrics.jsonl"; }
  std::filesystem::path csv_path() const { return dir_ / "metrics.csv"; }

 private:
  void repair_for_resume();
  void rewrite_csv_from_jsonl();
  void append(const std::filesystem::path& path, const std::string& text);

  std::filesystem::path dir_;
  MetricsOptions options_;
  std::map<std::string, double> sums_;
  std::map<std::string, double> counts_;
  std::vector<std::string> columns_;
  std::vector<RowSink> sinks_;
};

}  // namespace prefdiff::run
