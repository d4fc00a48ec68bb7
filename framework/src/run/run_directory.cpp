// The run folder: creation, the exclusive lock, resume checks, run.json.
#include "prefdiff/run/run_directory.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "prefdiff/run/run_name.hpp"

namespace fs = std::filesystem;

namespace prefdiff::run {
namespace {

constexpr const char* kRecipeToml = "recipe.toml";
constexpr const char* kRecipeJson = "recipe.json";
constexpr const char* kOverrides = "overrides.txt";
constexpr const char* kRunJson = "run.json";
constexpr const char* kLock = ".lock";

std::string overrides_text(const std::vector<std::string>& overrides) {
  std::string s;
  for (const std::string& o : overrides) s += o + "\n";
  return s;
}

nlohmann::json read_json(const fs::path& p) {
  try {
    return nlohmann::json::parse(read_file(p));
  } catch (const nlohmann::json::exception& e) {
    throw RunError("'" + p.string() + "' is not valid JSON: " + e.what() +
                   ". HINT: it is written atomically by prefdiff; was it edited by hand?");
  }
}

std::string list_runs(const fs::path& output_dir) {
  std::string s;
  std::error_code ec;
  int n = 0;
  for (const fs::directory_entry& e : fs::directory_iterator(output_dir, ec)) {
    if (!e.is_directory() || is_temporary_name(e.path().filename().string())) continue;
    if (n++ == 10) {
      s += ", ...";
      break;
    }
    s += (s.empty() ? "" : ", ") + e.path().filename().string();
  }
  return s.empty() ? "none" : s;
}

// Exclusive advisory lock on <run>/.lock for the lifetime of the RunDirectory; the kernel drops it when the
// process dies (SIGKILL included), so a stale lock never blocks a resume. Returns -1 where the file
// system has no locks (some network mounts): the run goes on, without the protection.
int lock_run_folder(const fs::path& run) {
  fs::path p = run / kLock;
  int fd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw RunError("cannot open '" + p.string() + "': " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      std::string holder;
      char buf[256];
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      if (n > 0) holder.assign(buf, static_cast<std::size_t>(n));
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(fd);
      throw RunError("run folder '" + run.string() + "' is in use by another process (" +
                     (holder.empty() ? std::string("unknown") : holder) +
                     "). HINT: wait for it to finish, or use another run.name.");
    }
    ::close(fd);
    if (err == ENOLCK || err == EOPNOTSUPP || err == ENOSYS) return -1;
    throw RunError("cannot lock '" + p.string() + "': " + std::strerror(err));
  }
  std::string holder = "pid " + std::to_string(::getpid()) + " on " + host_name() + "\n";
  if (::ftruncate(fd, 0) == 0) {
    ssize_t ignored = ::pwrite(fd, holder.data(), holder.size(), 0);
    (void)ignored;  // informational only
  }
  return fd;
}

nlohmann::json with_defaults(nlohmann::json metadata) {
  if (!metadata.is_object()) metadata = nlohmann::json{{"metadata", metadata}};
  if (!metadata.contains("host")) metadata["host"] = host_name();
  if (!metadata.contains("start_time")) metadata["start_time"] = iso8601_now();
  if (!metadata.contains("pid")) metadata["pid"] = static_cast<std::int64_t>(::getpid());
  return metadata;
}

std::string differences_text(const std::vector<RecipeDifference>& diffs) {
  std::string s;
  for (const RecipeDifference& d : diffs) s += "\n  " + d.str();
  return s;
}

}  // namespace

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

std::string iso8601_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S%z", &tm);
  std::string s = buf;  // +0100 -> +01:00 (ISO 8601 extended, what Python's fromisoformat reads)
  if (s.size() >= 5) s.insert(s.size() - 2, ":");
  return s;
}

RunDirectory::RunDirectory(RunDirectory&& o) noexcept
    : path_(std::move(o.path_)),
      checkpoints_(std::move(o.checkpoints_)),
      resume_(std::move(o.resume_)),
      changes_(std::move(o.changes_)),
      recipe_(std::move(o.recipe_)),
      lock_fd_(o.lock_fd_) {
  o.lock_fd_ = -1;
}

RunDirectory& RunDirectory::operator=(RunDirectory&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(o.path_);
    checkpoints_ = std::move(o.checkpoints_);
    resume_ = std::move(o.resume_);
    changes_ = std::move(o.changes_);
    recipe_ = std::move(o.recipe_);
    lock_fd_ = o.lock_fd_;
    o.lock_fd_ = -1;
  }
  return *this;
}

RunDirectory::~RunDirectory() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

RunDirectory RunDirectory::open(const RunOptions& options, const RunInfo& info) {
  validate_run_name(options.name);  // before any folder is made or any temporary is cleaned
  if (!info.recipe.is_object())
    throw RunError("RunDirectory::open: the resolved recipe must be a JSON object");
  const fs::path output_dir = options.output_dir.empty() ? fs::path(".") : options.output_dir;
  RunDirectory run;
  run.path_ = output_dir / options.name;
  run.checkpoints_ = CheckpointStore(run.path_ / "checkpoints");
  run.recipe_ = info.recipe;
  std::error_code ec;
  const bool exists = fs::exists(run.path_, ec);
  remove_stale_temporaries(output_dir, false, options.name);

  auto create = [&](const nlohmann::json& metadata) {
    AtomicDirectory tmp(run.path_);
    tmp.write_file(kRecipeToml, info.recipe_toml);
    tmp.write_file(kRecipeJson, info.recipe.dump(2) + "\n");
    tmp.write_file(kOverrides, overrides_text(info.overrides));
    tmp.write_file(kRunJson, metadata.dump(2) + "\n");
    try {
      tmp.commit(false);
    } catch (const RunError&) {
      if (fs::exists(run.path_, ec))  // created by someone else meanwhile
        throw RunError("run folder '" + run.path_.string() + "' already exists. HINT: continue it with "
                       "--resume latest, or start a new run with run.name=<another name>.");
      throw;
    }
    run.lock_fd_ = lock_run_folder(run.path_);
  };

  if (options.resume.empty()) {
    if (exists) {
      std::string started;
      if (fs::exists(run.path_ / kRunJson, ec)) {
        try {
          started = " (started " + read_json(run.path_ / kRunJson).value("start_time", std::string("?")) + ")";
        } catch (const RunError&) {
        }
      }
      // A run that stopped before its first checkpoint cannot be continued: say so rather than send the
      // user to --resume, which would answer that there is nothing to resume.
      if (!run.checkpoints_.latest())
        throw RunError("run folder '" + run.path_.string() + "' already exists" + started +
                       " but holds no complete checkpoint (it stopped before its first one), so there is nothing to "
                       "resume. HINT: delete that folder to start this run again, or start a new run with "
                       "run.name=<another name> (prefdiff never reuses a run folder for a fresh start).");
      throw RunError("run folder '" + run.path_.string() + "' already exists" + started +
                     ". HINT: continue it with --resume latest, or start a new run with run.name=<another name> "
                     "(prefdiff never reuses a run folder for a fresh start).");
    }
    create(with_defaults(info.metadata));
    return run;
  }

  // Resuming.
  if (!exists && options.resume == "latest")
    throw RunError("--resume latest: run folder '" + run.path_.string() + "' does not exist (runs in '" +
                   output_dir.string() + "': " + list_runs(output_dir) +
                   "). HINT: check run.name and run.output_dir, or drop --resume to start this run.");
  if (exists) {
    if (!fs::is_directory(run.path_, ec))
      throw RunError("'" + run.path_.string() + "' exists and is not a folder. HINT: use another run.name.");
    run.lock_fd_ = lock_run_folder(run.path_);
    remove_stale_temporaries(run.path_, run.lock_fd_ >= 0);
    remove_stale_temporaries(run.checkpoints_.dir(), run.lock_fd_ >= 0);
  }
  CheckpointInfo ckpt = run.checkpoints_.resolve(options.resume);

  // The recipe the checkpoint was written under: its own copy, else the run folder's.
  nlohmann::json before;
  std::string before_source;
  if (ckpt.meta().is_object() && ckpt.meta().contains("recipe")) {
    before = ckpt.meta()["recipe"];
    before_source = (ckpt.path / kCheckpointMarker).string();
  } else if (fs::exists(ckpt.path.parent_path().parent_path() / kRecipeJson, ec)) {
    before_source = (ckpt.path.parent_path().parent_path() / kRecipeJson).string();
    before = read_json(before_source);
  } else {
    throw RunError("cannot check the recipe of checkpoint '" + ckpt.path.string() + "': neither its " +
                   kCheckpointMarker + " nor its run folder has one. HINT: resume from a checkpoint written by "
                   "prefdiff train.");
  }
  std::vector<RecipeDifference> refused = disallowed_differences(before, info.recipe, options.resume_may_differ);
  if (!refused.empty())
    throw RunError("checkpoint '" + ckpt.path.string() + "' was written under a different recipe (" +
                   before_source + "); these keys differ (checkpoint -> now):" + differences_text(refused) +
                   "\nHINT: resume with the recipe and overrides of that run (its recipe.toml), or start a new run "
                   "with another run.name. Keys allowed to change on resume: " +
                   [&] {
                     std::string s;
                     for (const std::string& k : options.resume_may_differ) s += (s.empty() ? "" : ", ") + k;
                     return s;
                   }() + ".");
  run.changes_ = diff_recipes(before, info.recipe);
  run.resume_ = ckpt;

  nlohmann::json entry = {{"time", iso8601_now()},
                          {"host", host_name()},
                          {"pid", static_cast<std::int64_t>(::getpid())},
                          {"checkpoint", ckpt.path.string()},
                          {"step", ckpt.step},
                          {"overrides", info.overrides},
                          {"metadata", info.metadata}};
  nlohmann::json changes = nlohmann::json::array();
  for (const RecipeDifference& d : run.changes_)
    changes.push_back({{"key", d.key}, {"before", d.before}, {"after", d.after}});
  entry["recipe_changes"] = changes;

  if (!exists) {  // continuing another run's checkpoint in a new folder
    nlohmann::json metadata = with_defaults(info.metadata);
    metadata["resumed_from"] = entry;
    create(metadata);
    return run;
  }
  // Same folder: the files describe the recipe in effect now; run.json keeps every start.
  nlohmann::json metadata = fs::exists(run.path_ / kRunJson, ec) ? read_json(run.path_ / kRunJson) : nlohmann::json::object();
  if (!metadata.contains("resumes") || !metadata["resumes"].is_array()) metadata["resumes"] = nlohmann::json::array();
  metadata["resumes"].push_back(entry);
  atomic_write_file(run.path_ / kRecipeToml, info.recipe_toml);
  atomic_write_file(run.path_ / kRecipeJson, info.recipe.dump(2) + "\n");
  atomic_write_file(run.path_ / kOverrides, overrides_text(info.overrides));
  atomic_write_file(run.path_ / kRunJson, metadata.dump(2) + "\n");
  return run;
}

nlohmann::json RunDirectory::checkpoint_meta() const { return {{"recipe", recipe_}}; }

nlohmann::json RunDirectory::metadata() const { return read_json(path_ / kRunJson); }

void RunDirectory::update_metadata(const nlohmann::json& patch) {
  nlohmann::json m = metadata();
  m.merge_patch(patch);
  atomic_write_file(path_ / kRunJson, m.dump(2) + "\n");
}

}  // namespace prefdiff::run
