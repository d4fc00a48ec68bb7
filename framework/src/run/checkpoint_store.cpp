// Checkpoint folders: naming, listing, the completion marker, resolve for --resume, pruning.
#include "prefdiff/run/checkpoint_store.hpp"

#include <algorithm>
#include <cstdio>

#include "prefdiff/run/run_directory.hpp"  // iso8601_now

namespace fs = std::filesystem;

namespace prefdiff::run {
namespace {

// "step-<digits>" -> step, else -1.
std::int64_t step_from_name(const std::string& name) {
  const std::string prefix = "step-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  if (name.size() - prefix.size() > 18) return -1;
  for (std::size_t i = prefix.size(); i < name.size(); ++i)
    if (name[i] < '0' || name[i] > '9') return -1;
  return std::stoll(name.substr(prefix.size()));
}

std::string describe_existing(const std::vector<CheckpointInfo>& all) {
  if (all.empty()) return "none";
  std::string s;
  for (const CheckpointInfo& c : all) {
    if (!s.empty()) s += ", ";
    s += c.path.filename().string();
    if (!c.complete) s += " (incomplete: " + c.problem + ")";
  }
  return s;
}

nlohmann::json file_manifest(const fs::path& root) {
  nlohmann::json files = nlohmann::json::object();
  std::vector<std::pair<std::string, std::uintmax_t>> entries;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    if (!it->is_regular_file()) continue;
    std::string rel = fs::relative(it->path(), root).generic_string();
    if (rel == kCheckpointMarker || rel == kTemporaryMarker) continue;
    entries.emplace_back(rel, it->file_size());
  }
  std::sort(entries.begin(), entries.end());
  for (const auto& [rel, size] : entries) files[rel] = size;
  return files;
}

}  // namespace

const nlohmann::json& CheckpointInfo::meta() const {
  static const nlohmann::json null_json;
  if (marker.is_object() && marker.contains("meta")) return marker["meta"];
  return null_json;
}

CheckpointStore::CheckpointStore(fs::path dir) : dir_(std::move(dir)) {}

std::string CheckpointStore::name_for(std::int64_t step) {
  if (step < 0) throw RunError("checkpoint step must be >= 0, got " + std::to_string(step));
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%08lld", static_cast<long long>(step));
  return buf;
}

CheckpointInfo CheckpointStore::inspect(const fs::path& path) {
  CheckpointInfo info;
  info.path = path;
  info.step = step_from_name(path.filename().string());
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    info.problem = fs::exists(path, ec) ? "not a folder" : "does not exist";
    return info;
  }
  fs::path marker_path = path / kCheckpointMarker;
  if (!fs::exists(marker_path, ec)) {
    info.problem = std::string("no ") + kCheckpointMarker + " (the marker written last; the save did not finish)";
    return info;
  }
  try {
    info.marker = nlohmann::json::parse(read_file(marker_path));
  } catch (const std::exception& e) {
    info.problem = std::string(kCheckpointMarker) + " is unreadable: " + e.what();
    return info;
  }
  const nlohmann::json& m = info.marker;
  if (!m.is_object() || m.value("format", "") != kCheckpointFormat) {
    info.problem = std::string(kCheckpointMarker) + " is not a prefdiff checkpoint marker";
    return info;
  }
  if (m.value("format_version", 0) > kCheckpointFormatVersion) {
    info.problem = "format version " + std::to_string(m.value("format_version", 0)) +
                   " is newer than this prefdiff reads (" + std::to_string(kCheckpointFormatVersion) + ")";
    return info;
  }
  if (!m.contains("step") || !m["step"].is_number_integer() || !m.contains("files") || !m["files"].is_object()) {
    info.problem = std::string(kCheckpointMarker) + " lacks 'step' or 'files'";
    return info;
  }
  std::int64_t marker_step = m["step"].get<std::int64_t>();
  if (info.step >= 0 && marker_step != info.step) {
    info.problem = "folder name says step " + std::to_string(info.step) + " but the marker says " +
                   std::to_string(marker_step);
    return info;
  }
  info.step = marker_step;
  for (const auto& [rel, size] : m["files"].items()) {
    fs::path f = path / rel;
    if (!fs::is_regular_file(f, ec)) {
      info.problem = "listed file '" + rel + "' is missing";
      return info;
    }
    std::uintmax_t actual = fs::file_size(f, ec);
    if (ec || !size.is_number_unsigned() || actual != size.get<std::uintmax_t>()) {
      info.problem = "file '" + rel + "' has " + std::to_string(actual) + " bytes, the marker recorded " + size.dump();
      return info;
    }
  }
  info.complete = true;
  return info;
}

std::vector<CheckpointInfo> CheckpointStore::list() const {
  std::vector<CheckpointInfo> out;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir_, ec)) {
    if (step_from_name(e.path().filename().string()) < 0) continue;
    out.push_back(inspect(e.path()));
  }
  std::sort(out.begin(), out.end(), [](const CheckpointInfo& a, const CheckpointInfo& b) {
    return a.step != b.step ? a.step < b.step : a.path < b.path;
  });
  return out;
}

std::optional<CheckpointInfo> CheckpointStore::latest() const {
  std::vector<CheckpointInfo> all = list();
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (it->complete) return *it;
  return std::nullopt;
}

CheckpointInfo CheckpointStore::resolve(const std::string& spec) const {
  if (spec.empty()) throw CheckpointError("--resume needs 'latest' or a checkpoint folder, got an empty value");
  if (spec == "latest") {
    std::vector<CheckpointInfo> all = list();
    if (all.empty())
      throw CheckpointError("--resume latest: no checkpoint in '" + dir_.string() +
                            "' (looked for step-* folders; " +
                            (fs::exists(dir_) ? "the folder is empty" : "the folder does not exist") +
                            "). HINT: this run stopped before it saved one (train.checkpoint_every): delete its folder '" +
                            dir_.parent_path().string() + "' and start again without --resume, or check "
                            "run.output_dir and run.name.");
    const CheckpointInfo& newest = all.back();
    if (!newest.complete) {
      std::optional<CheckpointInfo> prev = latest();
      throw CheckpointError("--resume latest: the newest checkpoint '" + newest.path.string() +
                            "' is incomplete: " + newest.problem + ". Checkpoints in '" + dir_.string() +
                            "': " + describe_existing(all) + ". HINT: " +
                            (prev ? "resume from the previous one with --resume " + prev->path.string() + ", or "
                                  : std::string()) +
                            "remove the incomplete folder.");
    }
    return newest;
  }

  fs::path p(spec);
  std::error_code ec;
  if (!fs::exists(p, ec)) {
    throw CheckpointError("--resume " + spec + ": no such checkpoint folder. Checkpoints in '" + dir_.string() +
                          "': " + describe_existing(list()) +
                          ". HINT: pass one of them, or --resume latest.");
  }
  if (fs::is_directory(p / "checkpoints", ec) && !fs::exists(p / kCheckpointMarker, ec)) {
    CheckpointStore other(p / "checkpoints");
    throw CheckpointError("--resume " + spec + " is a run folder, not a checkpoint. Its checkpoints: " +
                          describe_existing(other.list()) +
                          ". HINT: pass one of them, or set run.name to that run and use --resume latest.");
  }
  CheckpointInfo info = inspect(p);
  if (!info.complete) {
    CheckpointStore siblings(p.parent_path().empty() ? fs::path(".") : p.parent_path());
    std::optional<CheckpointInfo> prev = siblings.latest();
    throw CheckpointError("--resume " + spec + ": not a complete checkpoint: " + info.problem +
                          (prev ? ". HINT: the newest complete one next to it is " + prev->path.string() : std::string()) +
                          ".");
  }
  return info;
}

AtomicDirectory CheckpointStore::begin(std::int64_t step, nlohmann::json meta) const {
  AtomicDirectory dir(dir_ / name_for(step));
  dir.set_before_commit([step, meta = std::move(meta)](AtomicDirectory& d) {
    nlohmann::json marker;
    marker["format"] = kCheckpointFormat;
    marker["format_version"] = kCheckpointFormatVersion;
    marker["step"] = step;
    marker["created"] = iso8601_now();
    marker["files"] = file_manifest(d.path());
    marker["meta"] = meta;
    d.write_file(kCheckpointMarker, marker.dump(2) + "\n");
  });
  return dir;
}

std::vector<fs::path> CheckpointStore::prune(int keep_last) const {
  if (keep_last < 1) throw RunError("prune: keep_last must be >= 1, got " + std::to_string(keep_last));
  std::vector<CheckpointInfo> all = list();
  std::vector<fs::path> removed;
  // Index of the keep_last-th newest complete checkpoint: everything before it goes.
  int seen = 0;
  std::ptrdiff_t cut = -1;
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(all.size()) - 1; i >= 0; --i) {
    if (all[i].complete && ++seen == keep_last) {
      cut = i;
      break;
    }
  }
  if (cut <= 0) return removed;
  for (std::ptrdiff_t i = 0; i < cut; ++i) {
    const fs::path& victim = all[i].path;
    // Rename first: the step-* name disappears atomically; a crash leaves only a temporary to clean.
    fs::path doomed = temporary_sibling(victim);
    std::error_code ec;
    mark_for_cleanup(victim);  // a crash after the rename leaves a temporary any later run may remove
    fs::rename(victim, doomed, ec);
    if (ec) throw RunError("cannot remove old checkpoint '" + victim.string() + "': " + ec.message());
    fs::remove_all(doomed, ec);
    removed.push_back(victim);
  }
  return removed;
}

}  // namespace prefdiff::run
