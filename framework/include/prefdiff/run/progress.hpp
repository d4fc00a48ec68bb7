// Training progress for people: on a terminal a one-line bar redrawn in place; elsewhere (CI logs, Slurm)
// plain lines at the first step, every N steps or T seconds, and the last step:
//   step 120/2000 (6%) loss 0.6731 acc 0.58 1.9 pairs/s eta 00:14:03
// Only rank 0 should own one (the caller decides).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace prefdiff::run {

enum class ProgressMode { automatic, bar, plain, off };  // recipe log.progress: auto|bar|plain|off

// "auto", "bar", "plain", "off"; throws RunError otherwise.
ProgressMode parse_progress_mode(const std::string& text);

struct ProgressOptions {
  ProgressMode mode = ProgressMode::automatic;  // automatic: bar when `out` is a terminal (and TERM != dumb)
  std::int64_t every_steps = 0;                 // plain: print at multiples of N steps (0: only by time)
  double every_seconds = 30.0;                  // plain: ... and at least every T seconds
  double redraw_seconds = 0.1;                  // bar: at most this often (the last step always)
  int width = 0;                                // bar width in columns; 0: the terminal's, else COLUMNS, else 80
  std::function<double()> clock;                // seconds, monotonic; default steady_clock (tests inject)
};

struct ProgressStats {
  double loss = NAN;        // NaN: not shown
  double accuracy = NAN;    // rewards/accuracies
  double pairs_per_s = NAN;
};

class Progress {
 public:
  // Steps run from `start_step` (the resume step, or 0) to `total_steps`; ETA uses the rate since then.
  Progress(std::int64_t total_steps, std::FILE* out = stderr, ProgressOptions options = {},
           std::int64_t start_step = 0);
  ~Progress();  // ends the bar's line

  ProgressMode mode() const { return mode_; }  // bar, plain or off after auto-detection
  void update(std::int64_t step, const ProgressStats& stats);
  // Prints a whole line (a log message) without tearing the bar: clears it, prints, redraws.
  void message(const std::string& line);
  void finish();  // ends the bar's line; idempotent

  // The text of one status (no bar, no newline): "step 120/2000 (6%) loss ... eta 00:14:03".
  std::string status_text(std::int64_t step, const ProgressStats& stats, double now) const;

 private:
  void draw_bar(std::int64_t step, const ProgressStats& stats, double now);
  double now() const;

  std::int64_t total_;
  std::int64_t start_step_;
  std::FILE* out_;
  ProgressOptions options_;
  ProgressMode mode_;
  double t0_ = 0;
  double last_print_ = -1;
  std::int64_t last_step_printed_ = -1;
  std::int64_t last_step_ = -1;
  ProgressStats last_stats_;
  bool bar_on_screen_ = false;
  bool finished_ = false;
};

// "00:14:03", "27:46:40" past a day, "--:--:--" when unknown.
std::string format_duration(double seconds);

}  // namespace prefdiff::run
