// The event files of a run folder: their names, which of them prefdiff wrote, and the pruning a resume does.
// Internal to prefdiff_tensorboard.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace prefdiff::run::event_files {

inline constexpr const char* kFileVersion = "brain.Event:2";  // what TensorFlow 2 writes; readers check it
inline constexpr const char* kWriterName = "prefdiff";        // Event.source_metadata.writer of the header

// Event files directly in `dir` (TensorBoard's test: "tfevents" in the name), temporaries excluded,
// sorted by name: the order in which TensorBoard reads them.
std::vector<std::filesystem::path> list(const std::filesystem::path& dir);

// Whether the file's first record is a prefdiff file_version header. Files of other writers are never
// changed.
bool written_by_prefdiff(const std::filesystem::path& file);

// A name for a new event file, `events.out.tfevents.<time>.<host>.<pid>.<counter>[.<suffix>]`, that sorts
// after every name in `existing`: the time is `now`, or one second past the newest existing file's when
// that one would sort later (same second, clock skew between hosts).
std::string new_name(const std::vector<std::string>& existing, std::int64_t now, const std::string& host,
                     std::int64_t pid, std::uint64_t counter, const std::string& suffix);

// This host's name as it goes into file names (characters outside [A-Za-z0-9._-] become '_').
std::string host_for_file_name();

struct PruneResult {
  std::size_t dropped_records = 0;  // events with a step after the resume step
  bool dropped_tail = false;        // a torn or damaged last record
};
// Removes from a prefdiff event file the events with step > `step` and a bad tail, in place: by cutting
// the file (ftruncate, then fsync) when everything from some record on goes, else by rewriting the kept
// records to a temporary and renaming it over the file. A file that needs neither is not touched.
PruneResult prune_after_step(const std::filesystem::path& file, std::int64_t step);

// Writes all of `bytes` to `fd` (short writes and EINTR retried); RunError naming `path` on failure.
void write_all(int fd, std::string_view bytes, const std::filesystem::path& path);

}  // namespace prefdiff::run::event_files
