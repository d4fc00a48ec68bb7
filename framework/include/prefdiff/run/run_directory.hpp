// The run folder `<output_dir>/<name>`: created once with the resolved recipe, the overrides and the run
// metadata, or reopened to resume from a checkpoint. Rank 0 alone opens it; other ranks read the resolved
// checkpoint path from rank 0 (or open a CheckpointStore read-only). See docs/run-directory.md.
//
//   RunOptions opt;  opt.output_dir = ...; opt.name = ...; opt.resume = cli_resume;   // run.output_dir, run.name
//   RunInfo info;    info.recipe_toml = r.to_toml(); info.recipe = r.values; info.overrides = r.overrides; ...
//   RunDirectory run = RunDirectory::open(opt, info);
//   if (run.resuming()) load(run.resume_checkpoint()->path);
//   MetricsLogger metrics(run.path(), MetricsOptions{true, run.resume_step()});
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/run/checkpoint_store.hpp"
#include "prefdiff/run/recipe_diff.hpp"

namespace prefdiff::run {

struct RunOptions {
  std::filesystem::path output_dir;  // run.output_dir
  std::string name;                  // run.name
  // "" for a new run; "latest" to continue this run; a checkpoint folder to continue from it (in this
  // run folder when it exists, else in a new one created from the current recipe).
  std::string resume;
  // Flattened recipe keys (globs) allowed to differ from the checkpoint's recipe when resuming.
  std::vector<std::string> resume_may_differ = default_resume_may_differ();
};

// What the trainer knows about the run; written verbatim into the folder.
struct RunInfo {
  std::string recipe_toml;             // the resolved recipe (Recipe::to_toml())
  nlohmann::json recipe;               // the same values as JSON: compared on resume, stored with checkpoints
  std::vector<std::string> overrides;  // key.path=value, as given
  // run.json: plugin ids/versions/formula versions/fingerprints, paths, source revision, prefdiff and
  // LibTorch versions, command line, ... "host" and "start_time" are filled in when absent.
  nlohmann::json metadata = nlohmann::json::object();
};

class RunDirectory {
 public:
  // Creates or reopens the run folder. Throws RunError: the folder exists and `resume` is empty, it is
  // missing for "latest", another process holds it, or the checkpoint's recipe differs (the keys are
  // listed); CheckpointError when the checkpoint to resume is missing or incomplete.
  static RunDirectory open(const RunOptions& options, const RunInfo& info);

  RunDirectory(RunDirectory&&) noexcept;
  RunDirectory& operator=(RunDirectory&&) noexcept;
  ~RunDirectory();  // releases the folder lock

  const std::filesystem::path& path() const { return path_; }
  CheckpointStore& checkpoints() { return checkpoints_; }
  const CheckpointStore& checkpoints() const { return checkpoints_; }

  bool resuming() const { return resume_.has_value(); }
  const std::optional<CheckpointInfo>& resume_checkpoint() const { return resume_; }
  std::int64_t resume_step() const { return resume_ ? resume_->step : -1; }  // -1: fresh start
  // Allowed differences between the checkpoint's recipe and the current one (recorded in run.json).
  const std::vector<RecipeDifference>& resume_changes() const { return changes_; }

  // Meta to pass to checkpoints().begin(step, ...): {"recipe": the current recipe}.
  nlohmann::json checkpoint_meta() const;

  // Rewrites run.json (atomically) after merging `patch` into it, e.g. {"end_time": ..., "final_step": ...}.
  void update_metadata(const nlohmann::json& patch);
  nlohmann::json metadata() const;  // run.json as on disk

 private:
  RunDirectory() = default;
  std::filesystem::path path_;
  CheckpointStore checkpoints_{""};
  std::optional<CheckpointInfo> resume_;
  std::vector<RecipeDifference> changes_;
  nlohmann::json recipe_;
  int lock_fd_ = -1;
};

// Helpers for run metadata.
std::string host_name();
std::string iso8601_now();  // local time with offset, e.g. 2025-01-31T14:03:12+01:00

}  // namespace prefdiff::run
