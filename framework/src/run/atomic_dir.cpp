// Crash-safe folders and files: write to a temporary sibling, fsync, rename, fsync the parent.
#include "prefdiff/run/atomic_dir.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

namespace fs = std::filesystem;

namespace prefdiff::run {
namespace {

std::string sys_error(const std::string& what, const fs::path& path, int err) {
  std::string msg = what + " '" + path.string() + "': " + std::strerror(err);
  if (err == ENAMETOOLONG)
    msg += ". HINT: a name in this path is longer than the file system allows (usually 255 bytes); shorten "
           "run.name or run.output_dir";
  return msg;
}

// The hint for a failed create: "check that the folder is writable" is wrong advice for a long name.
std::string create_hint(int err) {
  return err == ENAMETOOLONG ? "." : ". HINT: check that the folder is writable.";
}

// kTemporaryMarker (atomic_dir.hpp), inside every temporary folder until its commit: who made it. An
// unlocked cleanup removes a folder only when it carries this marker, made by a process of this host that
// is gone, so a folder whose name merely looks like a temporary (a run named ".x.tmp-1-0") is never deleted.
constexpr const char* kOwnerMarker = kTemporaryMarker;

// The start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), or 0 when unknown: with
// the pid it identifies a process, so that a reused pid is not taken for the writer of an old temporary.
std::uint64_t process_start_ticks(std::int64_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (f == nullptr) return 0;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name (field 2) may contain spaces and parentheses
  if (p == nullptr) return 0;
  unsigned long long ticks = 0;
  // After ") ": state (field 3), then fields 4..21, then starttime (field 22).
  if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                  &ticks) != 1)
    return 0;
  return ticks;
}

std::string this_host() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string owner_text(std::int64_t pid) {
  return "pid " + std::to_string(pid) + "\nstart " + std::to_string(process_start_ticks(pid)) + "\nhost " +
         this_host() + "\n";
}

void write_file_unsynced(const fs::path& path, const std::string& text, bool exclusive = true) {
  std::FILE* f = std::fopen(path.c_str(), exclusive ? "wbx" : "wb");
  if (f == nullptr) {
    const int err = errno;
    throw RunError(sys_error("cannot create", path, err) + create_hint(err));
  }
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) throw RunError(sys_error("cannot write", path, errno) + ". HINT: the disk may be full.");
}

// Whether `dir` is a temporary folder that a process of this host made (its marker names `pid`, the pid in
// the folder's name) and that process is gone: not running, or its pid now belongs to another process.
bool abandoned_by_its_maker(const fs::path& dir, std::int64_t pid) {
  std::FILE* f = std::fopen((dir / kOwnerMarker).c_str(), "r");
  if (f == nullptr) return false;
  char host[256] = {0};
  long long marker_pid = -1;
  unsigned long long start = 0;
  const int fields = std::fscanf(f, "pid %lld start %llu host %255s", &marker_pid, &start, host);
  std::fclose(f);
  if (fields != 3 || marker_pid != pid || this_host() != host) return false;
  if (pid <= 0 || pid > INT32_MAX) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  const std::uint64_t now = process_start_ticks(pid);
  return start != 0 && now != 0 && now != start;  // the pid was reused
}

// Temporaries of this process that are in use, so that a cleanup never removes them.
std::mutex& live_mutex() {
  static std::mutex m;
  return m;
}
std::set<std::string>& live_set() {
  static std::set<std::string> s;
  return s;
}
void mark_live(const fs::path& p) {
  std::lock_guard<std::mutex> lock(live_mutex());
  live_set().insert(p.lexically_normal().string());
}
void unmark_live(const fs::path& p) {
  std::lock_guard<std::mutex> lock(live_mutex());
  live_set().erase(p.lexically_normal().string());
}
bool is_live(const fs::path& p) {
  std::lock_guard<std::mutex> lock(live_mutex());
  return live_set().count(p.lexically_normal().string()) > 0;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

void fsync_fd(int fd, const fs::path& path) {
  if (::fsync(fd) != 0)
    throw RunError(sys_error("cannot fsync", path, errno) +
                   ". HINT: the disk may be full or failing; nothing was committed.");
}

void fsync_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) throw RunError(sys_error("cannot open folder to fsync", dir, errno));
  // Some file systems (e.g. certain network mounts) do not sync folders; the rename is still atomic there.
  if (::fsync(fd.get()) != 0 && errno != EINVAL && errno != ENOTSUP)
    throw RunError(sys_error("cannot fsync folder", dir, errno));
}

// fsync every file, then every folder bottom-up, so the rename publishes durable contents.
void fsync_tree(const fs::path& root) {
  std::vector<fs::path> dirs{root};
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_symlink()) continue;
    if (it->is_directory())
      dirs.push_back(it->path());
    else if (it->is_regular_file())
      fsync_path(it->path());
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) fsync_dir(*it);
}

bool rename_noreplace(const fs::path& from, const fs::path& to, int* err) {
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return true;
  if (errno != EINVAL && errno != ENOSYS) {
    *err = errno;
    return false;
  }
#endif
  // No RENAME_NOREPLACE on this file system (e.g. NFS): check, then rename. rename(2) would otherwise
  // silently replace an empty folder; the window is tiny and only a second writer could use it.
  std::error_code ec;
  if (fs::exists(fs::symlink_status(to, ec))) {
    *err = EEXIST;
    return false;
  }
  if (::rename(from.c_str(), to.c_str()) == 0) return true;
  *err = errno;
  return false;
}

std::atomic<unsigned long> g_counter{0};

}  // namespace

fs::path temporary_sibling(const fs::path& target) {
  fs::path name = target.filename();
  if (name.empty() || name == "." || name == "..")
    throw RunError("cannot make a temporary name for '" + target.string() + "': it has no file name");
  std::string tmp = "." + name.string() + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter++);
  return target.parent_path() / tmp;
}

bool is_temporary_name(const std::string& file_name, std::int64_t* pid) {
  // .<name>.tmp-<pid>-<n>
  if (file_name.size() < 2 || file_name[0] != '.') return false;
  std::size_t dash = file_name.rfind('-');
  if (dash == std::string::npos || dash + 1 == file_name.size()) return false;
  for (std::size_t i = dash + 1; i < file_name.size(); ++i)
    if (file_name[i] < '0' || file_name[i] > '9') return false;
  std::size_t tmp = file_name.rfind(".tmp-", dash);
  if (tmp == std::string::npos || tmp < 2) return false;  // a name of at least one character
  std::size_t pid_begin = tmp + 5;
  if (pid_begin >= dash) return false;
  for (std::size_t i = pid_begin; i < dash; ++i)
    if (file_name[i] < '0' || file_name[i] > '9') return false;
  if (dash - pid_begin > 18) return false;
  if (pid) *pid = std::stoll(file_name.substr(pid_begin, dash - pid_begin));
  return true;
}

void fsync_path(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw RunError(sys_error("cannot open to fsync", path, errno));
  fsync_fd(fd.get(), path);
}

void write_file_synced(const fs::path& path, std::string_view bytes) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) {
    const int err = errno;
    throw RunError(sys_error("cannot create", path, err) + create_hint(err));
  }
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw RunError(sys_error("cannot write", path, errno) + ". HINT: the disk may be full.");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  fsync_fd(fd.get(), path);
  // close() can report a deferred write error (NFS): check it.
  if (::close(fd.release()) != 0) throw RunError(sys_error("cannot close", path, errno));
}

std::string read_file(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw RunError(sys_error("cannot open", path, errno));
  std::string out;
  char buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  bool failed = std::ferror(f);
  std::fclose(f);
  if (failed) throw RunError("cannot read '" + path.string() + "'");
  return out;
}

void atomic_write_file(const fs::path& path, std::string_view bytes) {
  fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  fs::path tmp = temporary_sibling(path);
  mark_live(tmp);
  try {
    write_file_synced(tmp, bytes);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw RunError(sys_error("cannot rename '" + tmp.string() + "' to", path, errno));
    unmark_live(tmp);
    fsync_dir(dir);
  } catch (...) {
    ::unlink(tmp.c_str());
    unmark_live(tmp);
    throw;
  }
}

AtomicDirectory::AtomicDirectory(fs::path final_path) : final_(std::move(final_path)) {
  if (final_.filename().empty()) final_ = final_.parent_path();  // "a/b/" -> "a/b"
  fs::path parent = final_.parent_path().empty() ? fs::path(".") : final_.parent_path();
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) throw RunError("cannot create folder '" + parent.string() + "': " + ec.message());
  tmp_ = temporary_sibling(final_);
  const std::string owner = owner_text(::getpid());  // before the mkdir: the unmarked moment stays short
  if (::mkdir(tmp_.c_str(), 0755) != 0) {
    const int err = errno;
    throw RunError(sys_error("cannot create temporary folder", tmp_, err) + create_hint(err));
  }
  mark_live(tmp_);
  // Synced with the rest at the commit: a marker lost in a crash only means that an unlocked cleanup
  // leaves the folder alone.
  try {
    write_file_unsynced(tmp_ / kOwnerMarker, owner);
  } catch (...) {
    discard();
    throw;
  }
}

AtomicDirectory::~AtomicDirectory() { discard(); }

AtomicDirectory::AtomicDirectory(AtomicDirectory&& other) noexcept
    : final_(std::move(other.final_)),
      tmp_(std::move(other.tmp_)),
      committed_(other.committed_),
      before_commit_(std::move(other.before_commit_)) {
  other.tmp_.clear();
  other.committed_ = true;
}

AtomicDirectory& AtomicDirectory::operator=(AtomicDirectory&& other) noexcept {
  if (this != &other) {
    discard();
    final_ = std::move(other.final_);
    tmp_ = std::move(other.tmp_);
    committed_ = other.committed_;
    before_commit_ = std::move(other.before_commit_);
    other.tmp_.clear();
    other.committed_ = true;
  }
  return *this;
}

void AtomicDirectory::discard() noexcept {
  if (committed_ || tmp_.empty()) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);  // best effort: a leftover is removed by the next run's cleanup
  unmark_live(tmp_);
  tmp_.clear();
}

void AtomicDirectory::write_file(const std::string& relative, std::string_view bytes) {
  if (committed_) throw RunError("'" + final_.string() + "' is already committed; cannot add '" + relative + "'");
  fs::path rel(relative);
  if (rel.is_absolute() || rel.empty())
    throw RunError("AtomicDirectory::write_file needs a relative path, got '" + relative + "'");
  for (const fs::path& part : rel)
    if (part == "..") throw RunError("AtomicDirectory::write_file: '" + relative + "' leaves the folder");
  fs::path target = tmp_ / rel;
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  if (ec) throw RunError("cannot create folder '" + target.parent_path().string() + "': " + ec.message());
  write_file_synced(target, bytes);
}

void AtomicDirectory::commit(bool replace_existing) {
  if (committed_) throw RunError("'" + final_.string() + "' is already committed");
  if (before_commit_) before_commit_(*this);
  // The owner marker stays until the rename, so a crash before it leaves a temporary any run may prove
  // abandoned; it is dropped from the final folder right after (a crash in between leaves a stray marker
  // in a complete folder, which no cleanup and no checkpoint check looks at).
  fsync_tree(tmp_);
  fs::path parent = final_.parent_path().empty() ? fs::path(".") : final_.parent_path();
  auto drop_owner_marker = [&] { ::unlink((final_ / kOwnerMarker).c_str()); };

  int err = 0;
  if (rename_noreplace(tmp_, final_, &err)) {
    unmark_live(tmp_);
    committed_ = true;
    drop_owner_marker();
    fsync_dir(parent);
    return;
  }
  if (err != EEXIST && err != ENOTEMPTY)
    throw RunError(sys_error("cannot rename '" + tmp_.string() + "' to", final_, err));
  if (!replace_existing)
    throw RunError("'" + final_.string() + "' already exists; the new contents stay in '" + tmp_.string() +
                   "' until this object is destroyed. HINT: remove it, or commit with replace_existing.");

  // Replace: swap the two names in one step where possible, so the final name always holds a complete
  // folder; the old contents end up under the temporary name and are removed afterwards.
  bool swapped = false;
#ifdef RENAME_EXCHANGE
  mark_for_cleanup(final_);  // the old contents end up under the temporary name
  if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0)
    swapped = true;
  else if (errno != EINVAL && errno != ENOSYS)
    throw RunError(sys_error("cannot swap '" + tmp_.string() + "' with", final_, errno));
#endif
  fs::path old_contents = tmp_;
  if (!swapped) {
    mark_for_cleanup(final_);  // about to be moved aside under a temporary name
    // Two renames: a crash between them leaves the old folder under a temporary name (cleaned as stale)
    // and no final folder, never a partial one.
    old_contents = temporary_sibling(final_);
    mark_live(old_contents);
    if (::rename(final_.c_str(), old_contents.c_str()) != 0)
      throw RunError(sys_error("cannot move aside", final_, errno));
    if (::rename(tmp_.c_str(), final_.c_str()) != 0)
      throw RunError(sys_error("cannot rename '" + tmp_.string() + "' to", final_, errno));
    unmark_live(tmp_);
  }
  committed_ = true;
  drop_owner_marker();
  fsync_dir(parent);
  std::error_code ec;
  fs::remove_all(old_contents, ec);
  unmark_live(old_contents);
}

void mark_for_cleanup(const fs::path& dir) {
  write_file_unsynced(dir / kOwnerMarker, owner_text(::getpid()), /*exclusive=*/false);
}

std::vector<fs::path> remove_stale_temporaries(const fs::path& dir, bool folder_is_locked, const std::string& only_for) {
  std::vector<fs::path> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::int64_t pid = 0;
    const std::string name = e.path().filename().string();
    if (!is_temporary_name(name, &pid)) continue;
    if (!only_for.empty() && name.compare(0, only_for.size() + 6, "." + only_for + ".tmp-") != 0) continue;
    if (is_live(e.path())) continue;
    bool stale = folder_is_locked;
    if (!stale) {
      std::error_code type_ec;
      const fs::file_status status = fs::symlink_status(e.path(), type_ec);
      if (fs::is_directory(status))
        stale = abandoned_by_its_maker(e.path(), pid);
      else if (fs::is_regular_file(status) && pid > 0 && pid <= INT32_MAX)  // an atomic_write_file temporary
        stale = ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    }
    if (!stale) continue;
    std::error_code rm_ec;
    fs::remove_all(e.path(), rm_ec);
    if (!rm_ec) removed.push_back(e.path());
  }
  return removed;
}

}  // namespace prefdiff::run
