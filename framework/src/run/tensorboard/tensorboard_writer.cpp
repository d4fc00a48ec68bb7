// TensorBoardWriter: Events (TensorFlow's message, our subset in proto/) framed as TFRecords, buffered,
// appended to one event file per writer.
#include "prefdiff/run/tensorboard/tensorboard_writer.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <set>
#include <unistd.h>

#include "event_files.hpp"
#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/tensorboard/tf_record.hpp"
#include "prefdiff/tensorboard/event.pb.h"

namespace fs = std::filesystem;
namespace pb = prefdiff::tensorboard;

namespace prefdiff::run {
namespace {

// Run folders with an open writer in this process (canonical paths): one writer per folder.
std::mutex g_open_mutex;
std::set<std::string> g_open_dirs;
std::atomic<std::uint64_t> g_file_counter{0};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string serialized(const pb::Event& event) {
  std::string bytes;
  if (!event.SerializeToString(&bytes)) throw RunError("tensorboard: could not serialise an event");
  return bytes;
}

void check_tag(const std::string& tag) {
  if (tag.empty()) throw RunError("tensorboard: a tag must not be empty");
}

std::uint32_t big_endian32(std::string_view b, std::size_t at) {
  return static_cast<std::uint32_t>(static_cast<unsigned char>(b[at])) << 24 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 1])) << 16 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 2])) << 8 |
         static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + 3]));
}

// Checks that `png` is a PNG of height x width and returns TensorFlow's colour space for its colour type.
int png_colorspace(const std::string& tag, std::string_view png, int height, int width) {
  static constexpr char kSignature[] = "\x89PNG\r\n\x1a\n";
  // Signature (8), IHDR length (4) and type (4), width (4), height (4), bit depth (1), colour type (1).
  if (png.size() < 26 || png.substr(0, 8) != std::string_view(kSignature, 8) || png.substr(12, 4) != "IHDR")
    throw RunError("tensorboard: image '" + tag + "' (" + std::to_string(png.size()) +
                   " bytes) is not a PNG file: it does not start with the PNG signature and header. "
                   "HINT: pass the bytes of an encoded PNG (what the PNG writer produces), not raw pixels.");
  const std::uint32_t png_width = big_endian32(png, 16);
  const std::uint32_t png_height = big_endian32(png, 20);
  if (height <= 0 || width <= 0 || png_height != static_cast<std::uint32_t>(height) ||
      png_width != static_cast<std::uint32_t>(width))
    throw RunError("tensorboard: image '" + tag + "' is " + std::to_string(png_height) + " pixels high and " +
                   std::to_string(png_width) + " wide by its PNG header, but add_image was given height " +
                   std::to_string(height) + " and width " + std::to_string(width) +
                   ". HINT: pass the image's height, then its width.");
  switch (static_cast<unsigned char>(png[25])) {
    case 0: return 1;  // grey
    case 4: return 2;  // grey + alpha
    case 2:            // RGB
    case 3: return 3;  // palette: RGB
    case 6: return 4;  // RGBA
    default:
      throw RunError("tensorboard: image '" + tag + "' has PNG colour type " +
                     std::to_string(static_cast<int>(static_cast<unsigned char>(png[25]))) +
                     ", which is not one of PNG's (0, 2, 3, 4, 6). HINT: the PNG file is damaged.");
  }
}

}  // namespace

bool is_event_file_name(const std::string& file_name) { return file_name.find("tfevents") != std::string::npos; }

TensorBoardWriter::TensorBoardWriter(fs::path run_dir, TensorBoardOptions options)
    : dir_(std::move(run_dir)), options_(std::move(options)) {
  std::error_code ec;
  if (!fs::is_directory(dir_, ec))
    throw RunError("tensorboard: run folder '" + dir_.string() + "' does not exist. HINT: open the RunDirectory first.");
  if (options_.filename_suffix.find_first_of(std::string("/\0", 2)) != std::string::npos)
    throw RunError("tensorboard: filename_suffix '" + options_.filename_suffix + "' must not contain '/'");
  dir_key_ = fs::weakly_canonical(dir_, ec).string();
  if (ec) dir_key_ = fs::absolute(dir_).lexically_normal().string();
  {
    std::lock_guard<std::mutex> lock(g_open_mutex);
    if (!g_open_dirs.insert(dir_key_).second)
      throw RunError("tensorboard: run folder '" + dir_.string() + "' already has an open TensorBoard writer in "
                     "this process. HINT: use one writer per run folder (close() the first one, or share it).");
  }
  try {
    std::vector<std::string> existing;
    for (const fs::path& file : event_files::list(dir_)) {
      existing.push_back(file.filename().string());
      if (!event_files::written_by_prefdiff(file)) continue;
      if (options_.resume_step < 0)
        throw RunError("tensorboard: '" + file.string() + "' holds the events of an earlier run, but this is a new "
                       "run. HINT: pass the resume step (TensorBoardOptions::resume_step) when continuing a run.");
      event_files::prune_after_step(file, options_.resume_step);
    }
    const std::string host = event_files::host_for_file_name();
    for (int attempt = 0; fd_ < 0; ++attempt) {
      path_ = dir_ / event_files::new_name(existing, static_cast<std::int64_t>(std::time(nullptr)), host, ::getpid(),
                                           g_file_counter++, options_.filename_suffix);
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
      if (fd_ < 0 && (errno != EEXIST || attempt >= 100))
        throw RunError("tensorboard: cannot create '" + path_.string() + "': " + std::strerror(errno));
    }
    fsync_path(dir_);  // the new name survives a power loss
    last_flush_ = std::chrono::steady_clock::now();

    pb::Event header;
    header.set_wall_time(now_seconds());
    header.set_file_version(event_files::kFileVersion);
    header.mutable_source_metadata()->set_writer(event_files::kWriterName);
    add_record(serialized(header));
    if (options_.resume_step >= 0) {
      // TensorFlow's restart marker: TensorBoard's Python loader drops what it read at steps >= this one.
      pb::Event start;
      start.set_wall_time(now_seconds());
      start.set_step(options_.resume_step + 1);
      start.mutable_session_log()->set_status(pb::SessionLog::START);
      start.mutable_session_log()->set_msg("resumed from the checkpoint of step " + std::to_string(options_.resume_step));
      add_record(serialized(start));
    }
    flush();
  } catch (...) {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      if (written_records_ == 0) ::unlink(path_.c_str());  // nothing of value in it
    }
    std::lock_guard<std::mutex> lock(g_open_mutex);
    g_open_dirs.erase(dir_key_);
    throw;
  }
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    close();
  } catch (...) {
  }
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, std::int64_t step,
                                   std::optional<double> wall_time) {
  add_scalars({{tag, value}}, step, wall_time);
}

void TensorBoardWriter::add_scalars(const std::map<std::string, double>& values, std::int64_t step,
                                    std::optional<double> wall_time) {
  if (values.empty()) return;
  pb::Event event;
  event.set_wall_time(wall_time ? *wall_time : now_seconds());
  event.set_step(step);
  for (const auto& [tag, value] : values) {
    check_tag(tag);
    pb::Summary::Value* v = event.mutable_summary()->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  add_record(serialized(event));
}

void TensorBoardWriter::add_image(const std::string& tag, std::string_view png, int height, int width,
                                  std::int64_t step, std::optional<double> wall_time) {
  check_tag(tag);
  const int colorspace = png_colorspace(tag, png, height, width);
  pb::Event event;
  event.set_wall_time(wall_time ? *wall_time : now_seconds());
  event.set_step(step);
  pb::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  pb::Summary::Image* image = v->mutable_image();
  image->set_height(height);
  image->set_width(width);
  image->set_colorspace(colorspace);
  image->set_encoded_image_string(png.data(), png.size());
  add_record(serialized(event));
}

void TensorBoardWriter::add_record(std::string event_bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) throw RunError("tensorboard: the writer of '" + path_.string() + "' is closed");
  tfrecord::append_framed(buffer_, event_bytes);
  ++buffered_records_;
  const double since_flush = std::chrono::duration<double>(std::chrono::steady_clock::now() - last_flush_).count();
  if (buffered_records_ >= options_.flush_every_records || buffer_.size() >= options_.flush_every_bytes ||
      since_flush >= options_.flush_every_seconds)
    flush_locked();
}

void TensorBoardWriter::flush() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) flush_locked();
}

void TensorBoardWriter::flush_locked() {
  last_flush_ = std::chrono::steady_clock::now();
  if (buffer_.empty()) return;
  try {
    event_files::write_all(fd_, buffer_, path_);
  } catch (...) {
    // A partly written record would hide every later one from readers: cut the file back to whole
    // records. The buffer is kept, so a later flush() tries again.
    const int cut_back = ::ftruncate(fd_, static_cast<off_t>(file_bytes_));
    (void)cut_back;  // if even this fails, the write error is the one to report
    throw;
  }
  file_bytes_ += buffer_.size();
  written_records_ += buffered_records_;
  buffer_.clear();
  buffered_records_ = 0;
  if (options_.fsync && ::fdatasync(fd_) != 0)
    throw RunError("tensorboard: cannot sync '" + path_.string() + "': " + std::strerror(errno));
}

void TensorBoardWriter::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0) return;
  std::exception_ptr failure;
  try {
    flush_locked();
  } catch (...) {
    failure = std::current_exception();
  }
  if (::close(fd_) != 0 && !failure)
    failure = std::make_exception_ptr(RunError("tensorboard: cannot close '" + path_.string() + "': " + std::strerror(errno)));
  fd_ = -1;
  {
    std::lock_guard<std::mutex> open_lock(g_open_mutex);
    g_open_dirs.erase(dir_key_);
  }
  if (failure) std::rethrow_exception(failure);
}

std::size_t TensorBoardWriter::records_written() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return written_records_;
}

}  // namespace prefdiff::run
