// Crash-safe writes: a folder or a file becomes visible under its final name only when complete.
// Either the old state or the new one survives a crash (SIGKILL, power loss); never a half-written one.
//
// Temporaries are siblings of their target named `.<name>.tmp-<pid>-<n>`, so a rename never crosses a
// file system and the next run can find (and remove) what a killed process left behind.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace prefdiff::run {

// Every I/O failure of the run folder: the message names the path, the system error and the fix.
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Inside every temporary folder of an AtomicDirectory until its commit: its maker's pid, process start time
// and host (see remove_stale_temporaries). Never part of a committed folder.
inline constexpr const char* kTemporaryMarker = ".prefdiff-temporary";

class AtomicDirectory {
 public:
  // Creates the temporary folder next to `final_path` (the parent must exist or is created).
  explicit AtomicDirectory(std::filesystem::path final_path);
  // Not committed: the temporary folder and everything in it are removed; the final name is untouched.
  ~AtomicDirectory();
  AtomicDirectory(AtomicDirectory&& other) noexcept;
  AtomicDirectory& operator=(AtomicDirectory&& other) noexcept;
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // The temporary folder: write here (directly, or with other writers such as the safetensors code).
  const std::filesystem::path& path() const { return tmp_; }
  const std::filesystem::path& final_path() const { return final_; }
  bool committed() const { return committed_; }

  // Writes `relative` (parent folders created) inside the temporary folder and fsyncs it.
  void write_file(const std::string& relative, std::string_view bytes);

  // Runs inside commit(), after every other file is written and before anything is synced; used by
  // CheckpointStore to add its completion marker. One hook; a second call replaces it.
  void set_before_commit(std::function<void(AtomicDirectory&)> hook) { before_commit_ = std::move(hook); }

  // fsyncs every file and folder inside, renames the temporary folder to the final name, fsyncs the
  // parent. An existing final folder is an error unless `replace_existing` (then it is swapped out
  // atomically with renameat2(RENAME_EXCHANGE) where the file system has it, and removed afterwards).
  void commit(bool replace_existing = false);

 private:
  void discard() noexcept;

  std::filesystem::path final_;
  std::filesystem::path tmp_;
  bool committed_ = false;
  std::function<void(AtomicDirectory&)> before_commit_;
};

// Writes a whole file crash-safely: temporary sibling, fsync, rename over `path`, fsync of the folder.
// Readers see the old bytes or the new ones.
void atomic_write_file(const std::filesystem::path& path, std::string_view bytes);

// Writes and fsyncs a file in place (no rename). For files inside an AtomicDirectory.
void write_file_synced(const std::filesystem::path& path, std::string_view bytes);
void fsync_path(const std::filesystem::path& path);  // a file or a folder
std::string read_file(const std::filesystem::path& path);

// `.<name>.tmp-<pid>-<n>` for `target`, unique within this process.
std::filesystem::path temporary_sibling(const std::filesystem::path& target);
// Whether a file name has the temporary pattern; `pid` receives the writer's pid.
bool is_temporary_name(const std::string& file_name, std::int64_t* pid = nullptr);

// Writes the owner marker of AtomicDirectory's temporaries into `dir`, a folder this process is about to
// rename to a temporary name and delete (an old checkpoint, the old contents of a replaced folder): should
// the process die in between, an unlocked cleanup can then prove the leftover abandoned. Harmless when the
// rename never happens (the marker is not part of any checkpoint's file list).
void mark_for_cleanup(const std::filesystem::path& dir);

// Removes temporaries directly in `dir` left by processes that are gone. Those of live AtomicDirectory
// objects and atomic writes of this process are always kept. When the caller holds the folder's lock
// (`folder_is_locked`, see RunDirectory) every other temporary is stale by definition. Otherwise (a folder
// shared with other runs, such as run.output_dir) only what is provably an abandoned temporary goes: a
// temporary folder only when it still carries the marker its AtomicDirectory wrote at creation, naming the
// pid of its name and this host, and that process is gone (not running, or its pid reused: the marker
// records the process's start time); a temporary file only when its pid is not running here. A folder
// whose name merely has the pattern (someone's run named ".x.tmp-1-0") is never touched. `only_for`
// narrows the cleaning to the temporaries of that one target name. Returns the removed paths.
std::vector<std::filesystem::path> remove_stale_temporaries(const std::filesystem::path& dir,
                                                            bool folder_is_locked = false,
                                                            const std::string& only_for = "");

}  // namespace prefdiff::run
