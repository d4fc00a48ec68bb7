// TensorBoard event files in the run folder, so that `tensorboard --logdir runs/` plots the metrics and
// shows the validation images. Rank 0 writes (the caller decides); one writer per run folder.
//
//   TensorBoardWriter tb(run.path(), TensorBoardOptions{run.resume_step()});
//   tb.add_scalars({{"loss", 0.69}, {"lr", 1e-5}}, step);          // one event, one point per tag
//   tb.add_image("validation/00", png_bytes, height, width, step);  // PNG bytes (write_png's encoder)
//   tb.flush();                                                    // also every N records and on close
//
// Each writer appends to a new file `events.out.tfevents.<unix time>.<host>.<pid>.<n>[.<suffix>]` whose
// name sorts after every event file already in the folder (TensorBoard reads a folder's files in name
// order and merges them into one run). Records are TFRecords of TensorFlow's Event message; a crash loses
// at most the records not yet flushed, and never damages earlier ones.
//
// Resume (`resume_step` >= 0): like metrics.jsonl, the folder's earlier prefdiff event files lose the
// records past the checkpoint's step (the killed run logged them; the resumed run logs those steps again)
// and a torn last record, each file rewritten atomically; the new file then starts with a SessionLog START
// at resume_step + 1, TensorFlow's own restart marker. So no step appears twice. docs/run-directory.md.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace prefdiff::run {

struct TensorBoardOptions {
  // Resuming from a checkpoint of this step (RunDirectory::resume_step()); -1: a new run, and then the
  // folder must not hold prefdiff event files already.
  std::int64_t resume_step = -1;
  // Flush policy: buffered records go to the file when any limit is reached, on flush() and on close().
  std::size_t flush_every_records = 10;
  std::size_t flush_every_bytes = std::size_t{8} << 20;  // validation images are large
  double flush_every_seconds = 120;                       // checked when a record is added
  bool fsync = true;                                      // fdatasync after every flush
  std::string filename_suffix;                            // appended as ".<suffix>" when not empty
};

// "events.out.tfevents.": the start of the names this writer gives its files.
inline constexpr const char* kEventFilePrefix = "events.out.tfevents.";
// TensorBoard's own test for an event file: the name contains "tfevents".
bool is_event_file_name(const std::string& file_name);

class TensorBoardWriter {
 public:
  // Creates the event file in `run_dir` (which must exist) and writes its file_version record.
  explicit TensorBoardWriter(std::filesystem::path run_dir, TensorBoardOptions options = {});
  ~TensorBoardWriter();  // close(); an error there is dropped: call close() to see it
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One scalar (TensorBoard stores float32; NaN and infinities are kept). wall_time: seconds since the
  // Unix epoch, now when absent.
  void add_scalar(const std::string& tag, double value, std::int64_t step,
                  std::optional<double> wall_time = std::nullopt);
  // Several scalars at one step as one record (a metrics row).
  void add_scalars(const std::map<std::string, double>& values, std::int64_t step,
                   std::optional<double> wall_time = std::nullopt);
  // An encoded PNG. height and width must be those in its header (checked); the colour space (grey, grey
  // + alpha, RGB, RGBA) is read from it. One image per tag and step: use a tag per image.
  void add_image(const std::string& tag, std::string_view png, int height, int width, std::int64_t step,
                 std::optional<double> wall_time = std::nullopt);

  void flush();  // buffered records to the file (and fdatasync with options.fsync)
  void close();  // flush, close the file, release the folder; later add_*() calls throw RunError

  const std::filesystem::path& path() const { return path_; }  // the event file
  std::size_t records_written() const;  // flushed to the file, the file_version record included

 private:
  void add_record(std::string event_bytes);
  void flush_locked();
  void close_locked();

  std::filesystem::path dir_;
  std::filesystem::path path_;
  std::string dir_key_;  // the folder's canonical path: one writer per folder in this process
  TensorBoardOptions options_;
  mutable std::mutex mutex_;
  int fd_ = -1;
  std::string buffer_;
  std::size_t buffered_records_ = 0;
  std::size_t written_records_ = 0;
  std::uint64_t file_bytes_ = 0;  // bytes of whole records in the file: where a failed write is cut back to
  std::chrono::steady_clock::time_point last_flush_;
};

}  // namespace prefdiff::run
