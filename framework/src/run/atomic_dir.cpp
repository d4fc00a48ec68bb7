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
  return what + " '" + path.string() + "': " + std::strerror(err);
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
  if (fd.get() < 0)
    throw RunError(sys_error("cannot create", path, errno) + ". HINT: check that the folder is writable.");
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
  if (::mkdir(tmp_.c_str(), 0755) != 0)
    throw RunError(sys_error("cannot create temporary folder", tmp_, errno) +
                   ". HINT: check that the folder is writable.");
  mark_live(tmp_);
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
  fsync_tree(tmp_);
  fs::path parent = final_.parent_path().empty() ? fs::path(".") : final_.parent_path();

  int err = 0;
  if (rename_noreplace(tmp_, final_, &err)) {
    unmark_live(tmp_);
    committed_ = true;
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
  if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_EXCHANGE) == 0)
    swapped = true;
  else if (errno != EINVAL && errno != ENOSYS)
    throw RunError(sys_error("cannot swap '" + tmp_.string() + "' with", final_, errno));
#endif
  fs::path old_contents = tmp_;
  if (!swapped) {
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
  fsync_dir(parent);
  std::error_code ec;
  fs::remove_all(old_contents, ec);
  unmark_live(old_contents);
}

std::vector<fs::path> remove_stale_temporaries(const fs::path& dir, bool folder_is_locked, const std::string& only_for) {
  std::vector<fs::path> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  const std::int64_t self = ::getpid();
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    std::int64_t pid = 0;
    const std::string name = e.path().filename().string();
    if (!is_temporary_name(name, &pid)) continue;
    if (!only_for.empty() && name.compare(0, only_for.size() + 6, "." + only_for + ".tmp-") != 0) continue;
    if (is_live(e.path())) continue;
    bool stale = folder_is_locked || pid == self;
    if (!stale && pid > 0 && pid <= INT32_MAX) stale = ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (!stale) continue;
    std::error_code rm_ec;
    fs::remove_all(e.path(), rm_ec);
    if (!rm_ec) removed.push_back(e.path());
  }
  return removed;
}

}  // namespace prefdiff::run
