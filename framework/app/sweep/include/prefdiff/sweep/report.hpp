// Sweep results from the run folders alone (<dir>/sweep.json + runs/*/eval.json + runs/*/metrics.jsonl):
// results.csv, jobs.csv, results.md and gnuplot plots. `prefdiff sweep report DIR` and the end of every
// `prefdiff sweep` call this. Torch-free.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace prefdiff::sweep {

struct ReportOptions {
  int resamples = 10000;    // bootstrap resamples of the paired differences
  uint64_t seed = 0;        // bootstrap seed (results are deterministic)
  bool plots = true;
  std::string gnuplot = "gnuplot";  // the plotting program (looked up on PATH)
};

struct ReportResult {
  int jobs = 0, finished = 0, failed = 0, unfinished = 0;
  std::string summary_table;      // the mean ± SE table (Markdown), as in results.md
  std::string problems;           // failed and unfinished jobs with their logs (Markdown list), or ""
  std::vector<std::filesystem::path> plots;  // PNGs written
  std::string plot_note;          // why plots are missing, when they are
};

// The metrics aggregated per (variant, grid values without the seed): eval.json key and column name.
struct MetricSpec {
  const char* eval_key;
  const char* column;
  const char* title;
};
const std::vector<MetricSpec>& report_metrics();

// Throws SweepError when <dir>/sweep.json is missing or unreadable.
ReportResult write_report(const std::filesystem::path& dir, const ReportOptions& options = {});

}  // namespace prefdiff::sweep
