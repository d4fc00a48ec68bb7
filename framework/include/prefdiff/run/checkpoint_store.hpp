// Checkpoints of one run: `<run>/checkpoints/step-00000123/`, each written through an AtomicDirectory
// and closed by a completion marker, `checkpoint.json`, that lists every file with its size.
//
//   CheckpointStore store(run.path() / "checkpoints");
//   AtomicDirectory ckpt = store.begin(step, {{"recipe", recipe_json}});
//   ... write files under ckpt.path() ...
//   ckpt.commit();                 // the marker is added inside commit()
//   store.prune(keep_checkpoints);
//   CheckpointInfo from = store.resolve("latest");   // or a path; throws CheckpointError when missing
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"

namespace prefdiff::run {

// A missing, incomplete or damaged checkpoint. The message says what was looked for and what exists.
class CheckpointError : public RunError {
 public:
  using RunError::RunError;
};

inline constexpr const char* kCheckpointMarker = "checkpoint.json";
inline constexpr const char* kCheckpointFormat = "prefdiff-checkpoint";
inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointInfo {
  std::filesystem::path path;
  std::int64_t step = -1;  // from the marker (or the folder name when the marker is unreadable)
  bool complete = false;   // marker present, parsed, and every listed file has its recorded size
  std::string problem;     // why not complete
  // The marker: {"format", "format_version", "step", "created", "files": {relative: bytes}, "meta": {...}}.
  nlohmann::json marker;
  const nlohmann::json& meta() const;  // marker["meta"], or null
};

class CheckpointStore {
 public:
  explicit CheckpointStore(std::filesystem::path dir);  // the folder is created by the first begin()

  const std::filesystem::path& dir() const { return dir_; }
  static std::string name_for(std::int64_t step);  // "step-00000123" (more digits past 99,999,999)

  // Every `step-*` folder, complete or not, ascending by step.
  std::vector<CheckpointInfo> list() const;
  // The newest complete checkpoint, if any.
  std::optional<CheckpointInfo> latest() const;

  // "latest" or a checkpoint folder. Throws CheckpointError when there is none, the path is missing,
  // or the checkpoint is incomplete (also when the newest folder is incomplete: resuming silently from an
  // older one would repeat steps without telling).
  CheckpointInfo resolve(const std::string& spec) const;

  // Reads and verifies one checkpoint folder (never throws; see `complete` and `problem`).
  static CheckpointInfo inspect(const std::filesystem::path& path);

  // Starts checkpoint `step`. Its commit() writes the marker with `meta` (e.g. the resolved recipe as
  // {"recipe": ...}) and refuses to replace an existing checkpoint of that step unless asked.
  AtomicDirectory begin(std::int64_t step, nlohmann::json meta = nlohmann::json::object()) const;

  // Keeps the newest `keep_last` complete checkpoints; removes older folders (complete or not), each
  // renamed to a temporary first so a crash mid-removal leaves no half-deleted checkpoint. Nothing newer
  // than the newest complete checkpoint is touched. Returns the removed folders.
  std::vector<std::filesystem::path> prune(int keep_last) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace prefdiff::run
