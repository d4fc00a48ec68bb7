// Event files of a run folder: names that sort in writing order, recognising prefdiff's own files, and
// the pruning a resume does (the counterpart of metrics.jsonl's, see MetricsLogger).
#include "event_files.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <unistd.h>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/tensorboard/tensorboard_writer.hpp"
#include "prefdiff/run/tensorboard/tf_record.hpp"
#include "prefdiff/tensorboard/event.pb.h"

namespace fs = std::filesystem;

namespace prefdiff::run::event_files {
namespace {

constexpr std::size_t kTimeDigits = 10;  // seconds since 1970, 10 digits until the year 2286

// The time in an `events.out.tfevents.<10 digits>...` name; -1 for other names.
std::int64_t time_in_name(const std::string& name) {
  const std::string prefix = kEventFilePrefix;
  if (name.compare(0, prefix.size(), prefix) != 0 || name.size() < prefix.size() + kTimeDigits) return -1;
  const std::string digits = name.substr(prefix.size(), kTimeDigits);
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  const std::size_t after = prefix.size() + kTimeDigits;
  if (after < name.size() && name[after] != '.') return -1;
  return std::stoll(digits);
}

bool is_prefdiff_header(const std::string& record) {
  prefdiff::tensorboard::Event e;
  return e.ParseFromString(record) && e.has_file_version() && e.source_metadata().writer() == kWriterName;
}

std::string sys_error(const std::string& what, const fs::path& path, int err) {
  return "tensorboard: " + what + " '" + path.string() + "': " + std::strerror(err);
}

void cut_to(const fs::path& file, std::uint64_t bytes) {
  if (::truncate(file.c_str(), static_cast<off_t>(bytes)) != 0)
    throw RunError(sys_error("cannot cut the records after the resume step from", file, errno));
  fsync_path(file);
}

// Copies the records `keep` says yes to into a temporary next to `file`, then renames it over `file`.
// The temporary's name has no "tfevents" in it, so TensorBoard never reads it as an event file.
template <typename Keep>
void rewrite(const fs::path& file, Keep keep) {
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  const fs::path tmp = temporary_sibling(dir / "tensorboard-prune");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw RunError(sys_error("cannot create", tmp, errno));
  try {
    std::ifstream in(file, std::ios::binary);
    tfrecord::RecordReader reader(in);
    std::string record, framed;
    for (std::size_t i = 0; reader.next(record); ++i) {
      if (!keep(i, record)) continue;
      framed.clear();
      tfrecord::append_framed(framed, record);
      write_all(fd, framed, tmp);
    }
    if (::fsync(fd) != 0) throw RunError(sys_error("cannot fsync", tmp, errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {  // a deferred write error (NFS)
    const int err = errno;
    ::unlink(tmp.c_str());
    throw RunError(sys_error("cannot close", tmp, err));
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw RunError(sys_error("cannot rename the pruned copy over", file, err));
  }
  fsync_path(dir);
}

}  // namespace

std::vector<fs::path> list(const fs::path& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_event_file_name(name) || is_temporary_name(name)) continue;
    if (entry.is_regular_file(ec)) out.push_back(entry.path());
  }
  if (ec) throw RunError("tensorboard: cannot list '" + dir.string() + "': " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

bool written_by_prefdiff(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw RunError("tensorboard: cannot open '" + file.string() + "': " + std::strerror(errno));
  tfrecord::RecordReader reader(in);
  std::string first;
  return reader.next(first) && is_prefdiff_header(first);
}

std::string new_name(const std::vector<std::string>& existing, std::int64_t now, const std::string& host,
                     std::int64_t pid, std::uint64_t counter, const std::string& suffix) {
  auto name_at = [&](std::int64_t t) {
    char digits[32];
    std::snprintf(digits, sizeof digits, "%010lld", static_cast<long long>(t));
    return kEventFilePrefix + std::string(digits) + "." + host + "." + std::to_string(pid) + "." +
           std::to_string(counter) + (suffix.empty() ? "" : "." + suffix);
  };
  // Each bump makes the name sort after that file and every file of an earlier second, so one pass will do.
  std::int64_t t = now;
  for (const std::string& other : existing) {
    const std::int64_t other_time = time_in_name(other);
    if (other_time >= 0 && other >= name_at(t)) t = other_time + 1;
  }
  return name_at(t);
}

std::string host_for_file_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string host(buf);
  for (char& c : host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  return host;
}

PruneResult prune_after_step(const fs::path& file, std::int64_t step) {
  PruneResult result;
  std::ifstream in(file, std::ios::binary);
  if (!in) throw RunError("tensorboard: cannot open '" + file.string() + "': " + std::strerror(errno));
  tfrecord::RecordReader reader(in);
  std::string record;
  if (!reader.next(record) || !is_prefdiff_header(record)) return result;  // not provably ours: untouched
  // Events after the step are normally the file's last ones (a writer logs steps in order): then the file
  // is cut there. Otherwise (steps out of order) the kept events are copied.
  std::int64_t cut = -1;
  bool kept_after_cut = false;
  prefdiff::tensorboard::Event event;
  auto keep = [&](const std::string& r) { return !event.ParseFromString(r) || event.step() <= step; };
  while (reader.next(record)) {
    if (!keep(record)) {
      ++result.dropped_records;
      if (cut < 0) cut = static_cast<std::int64_t>(reader.record_start());
    } else if (cut >= 0) {
      kept_after_cut = true;
    }
  }
  result.dropped_tail = reader.tail() != tfrecord::Tail::kClean;
  if (result.dropped_records == 0 && !result.dropped_tail) return result;
  in.close();
  if (!kept_after_cut)
    cut_to(file, cut >= 0 ? static_cast<std::uint64_t>(cut) : reader.good_bytes());
  else
    rewrite(file, [&](std::size_t index, const std::string& r) { return index == 0 || keep(r); });
  return result;
}

void write_all(int fd, std::string_view bytes, const fs::path& path) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      throw RunError(sys_error("cannot write", path, err) + (err == ENOSPC ? ". HINT: the disk is full." : ""));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace prefdiff::run::event_files
