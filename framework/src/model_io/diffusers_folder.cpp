// diffusers folder layout: which files hold the weights, strict name/shape matching on load, and the
// save_pretrained file layout (including huggingface_hub's greedy sharding) on save.
#include "prefdiff/model_io/diffusers_folder.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <fstream>
#include <set>
#include <sstream>

namespace prefdiff::model_io {

namespace fs = std::filesystem;

namespace {
const char* kWeightsName = "diffusion_pytorch_model.safetensors";
const char* kIndexName = "diffusion_pytorch_model.safetensors.index.json";

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(s[i]);
  }
  return out + "]";
}
}  // namespace

std::string add_variant(const std::string& file_name, const std::string& variant) {
  if (variant.empty()) return file_name;
  auto dot = file_name.rfind('.');
  if (dot == std::string::npos) return file_name + "." + variant;
  return file_name.substr(0, dot) + "." + variant + file_name.substr(dot);
}

std::string weights_file_name(const std::string& variant) { return add_variant(kWeightsName, variant); }
std::string weights_index_name(const std::string& variant) { return add_variant(kIndexName, variant); }

fs::path resolve_model_dir(const fs::path& root, const std::string& subfolder) {
  if (!subfolder.empty() && fs::is_regular_file(root / subfolder / "config.json")) return root / subfolder;
  if (fs::is_regular_file(root / "config.json")) return root;
  throw ModelIoError("no model found at '" + root.string() + "': neither '" + (root / subfolder).string() +
                     "/config.json' nor '" + (root / "config.json").string() +
                     "' exists. HINT: pass a diffusers pipeline folder or its '" + subfolder + "' subfolder.");
}

nlohmann::json read_json_file(const fs::path& path, const std::string& hint) {
  const std::string then = hint.empty() ? "" : "; " + hint;
  std::ifstream in(path);
  if (!in) throw ModelIoError("cannot read '" + path.string() + "'" + then);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ModelIoError("'" + path.string() + "' is not valid JSON: " + e.what() + then);
  }
}

CheckpointReader CheckpointReader::open(const fs::path& model_dir, const std::string& variant) {
  CheckpointReader r;
  fs::path single = model_dir / weights_file_name(variant);
  fs::path index = model_dir / weights_index_name(variant);
  if (fs::is_regular_file(single)) {
    r.files_.push_back(SafetensorsFile::open(single));
    for (const auto& t : r.files_[0].header().tensors) r.where_[t.name] = 0;
    return r;
  }
  if (fs::is_regular_file(index)) {
    nlohmann::json j = read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw ModelIoError("'" + index.string() + "' has no \"weight_map\" object");
    std::map<std::string, size_t> file_idx;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw ModelIoError("'" + index.string() + "': weight_map[\"" + tensor + "\"] is not a string");
      std::string fname = file.get<std::string>();
      if (fname.find('/') != std::string::npos || fname == ".." )
        throw ModelIoError("'" + index.string() + "': shard name '" + fname + "' must be a plain file name");
      auto it = file_idx.find(fname);
      if (it == file_idx.end()) {
        r.files_.push_back(SafetensorsFile::open(model_dir / fname));
        it = file_idx.emplace(fname, r.files_.size() - 1).first;
      }
      if (!r.files_[it->second].contains(tensor))
        throw ModelIoError("'" + index.string() + "' maps tensor '" + tensor + "' to '" + fname +
                           "', which does not contain it. HINT: the shards and the index are from different saves.");
      r.where_[tensor] = it->second;
    }
    return r;
  }
  std::string msg = "no weights in '" + model_dir.string() + "': expected '" + single.filename().string() + "' or '" +
                    index.filename().string() + "'.";
  if (variant.empty() && fs::is_regular_file(model_dir / weights_file_name("fp16")))
    msg += " HINT: only the 'fp16' variant is present; load it with variant \"fp16\".";
  else if (!variant.empty() && fs::is_regular_file(model_dir / kWeightsName))
    msg += " HINT: the folder has no '" + variant + "' variant; load it without a variant.";
  else if (fs::is_regular_file(model_dir / "diffusion_pytorch_model.bin"))
    msg += " HINT: only a pickle .bin checkpoint is present; re-save it with diffusers (safe_serialization=True).";
  throw ModelIoError(msg);
}

std::vector<std::string> CheckpointReader::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const TensorEntry& CheckpointReader::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError("checkpoint has no tensor '" + name + "'");
  return files_[it->second].entry(name);
}

at::Tensor CheckpointReader::view(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError("checkpoint has no tensor '" + name + "'");
  return files_[it->second].view(name);
}

const fs::path& CheckpointReader::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError("checkpoint has no tensor '" + name + "'");
  return files_[it->second].path();
}

void load_state_dict(const NamedTensors& targets, const CheckpointReader& source, const std::string& what) {
  std::vector<std::string> problems;
  std::set<std::string> expected;
  for (const auto& [name, t] : targets) {
    expected.insert(name);
    if (!source.contains(name)) {
      problems.push_back("missing tensor '" + name + "' " + shape_str(t.sizes()));
      continue;
    }
    const TensorEntry& e = source.entry(name);
    if (at::IntArrayRef(e.shape) != t.sizes())
      problems.push_back("tensor '" + name + "' has shape " + shape_str(e.shape) + " in '" +
                         source.file_of(name).filename().string() + "' but the model expects " + shape_str(t.sizes()));
    else if (e.dtype != StDtype::F32 && e.dtype != StDtype::F16 && e.dtype != StDtype::BF16 && e.dtype != StDtype::F64)
      problems.push_back("tensor '" + name + "' has dtype " + st_dtype_name(e.dtype) + " (expected a float dtype)");
  }
  for (const auto& name : source.names())
    if (!expected.count(name))
      problems.push_back("unexpected tensor '" + name + "' in '" + source.file_of(name).filename().string() + "'");
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "cannot load " << what << ": " << problems.size() << " problem(s):";
    size_t shown = 0;
    for (const auto& p : problems) {
      if (shown++ == 25) {
        msg << "\n  ... and " << problems.size() - 25 << " more";
        break;
      }
      msg << "\n  " << p;
    }
    msg << "\nHINT: the weights do not belong to this config.json (wrong folder, variant or model type?).";
    throw ModelIoError(msg.str());
  }
  // Non-finite weights are refused here, where the file and the tensor are known: otherwise they surface
  // steps later as a NaN loss blamed on the inputs, or as a NaN evaluation. One pass over every tensor.
  std::vector<std::string> non_finite;
  size_t bad_tensors = 0;
  for (const auto& [name, t] : targets) {
    const at::Tensor v = source.view(name);
    if (at::isfinite(v).all().item<bool>()) continue;
    if (++bad_tensors > 10) continue;
    const at::Tensor flat = v.reshape({-1});
    const at::Tensor bad = at::logical_not(at::isfinite(flat));
    const int64_t count = bad.sum().item<int64_t>();
    const int64_t first = bad.to(at::kByte).argmax().item<int64_t>();
    const int64_t nans = at::isnan(flat).sum().item<int64_t>();
    non_finite.push_back("tensor '" + name + "' in '" + source.file_of(name).string() + "' has " + std::to_string(count) +
                         " non-finite value(s) of " + std::to_string(flat.numel()) + " (" + std::to_string(nans) +
                         " NaN, " + std::to_string(count - nans) + " Inf; the first at flat index " +
                         std::to_string(first) + ")");
  }
  if (!non_finite.empty()) {
    std::ostringstream msg;
    msg << "cannot load " << what << ": " << bad_tensors << " tensor(s) hold NaN or Inf:";
    for (const auto& p : non_finite) msg << "\n  " << p;
    if (bad_tensors > non_finite.size()) msg << "\n  ... and " << bad_tensors - non_finite.size() << " more tensor(s)";
    msg << "\nHINT: the weights are damaged, or the training that saved them diverged; load an earlier checkpoint "
           "(or the original model), and check the file's source.";
    throw ModelIoError(msg.str());
  }
  at::NoGradGuard no_grad;
  for (const auto& [name, t] : targets) {
    at::Tensor dst = t;  // shares storage with the parameter
    dst.copy_(source.view(name));
  }
}

void save_model_folder(const fs::path& model_dir, const nlohmann::json& config, const NamedTensors& tensors,
                       const SaveOptions& options) {
  fs::create_directories(model_dir);
  {
    std::ofstream out(model_dir / "config.json");
    out << config.dump(2) << "\n";
    if (!out) throw ModelIoError("cannot write '" + (model_dir / "config.json").string() + "'");
  }
  // Like diffusers, remove weights of this variant left by an earlier save so that a loader cannot mix them.
  std::string base = add_variant("diffusion_pytorch_model", options.variant);
  for (const auto& e : fs::directory_iterator(model_dir)) {
    std::string n = e.path().filename().string();
    bool shard = n.rfind(base + "-", 0) == 0 && n.size() > 12 && n.substr(n.size() - 12) == ".safetensors";
    if (shard || n == weights_file_name(options.variant) || n == weights_index_name(options.variant))
      fs::remove(e.path());
  }

  // huggingface_hub.split_torch_state_dict_into_shards: greedy in state-dict order; a tensor larger than the
  // limit gets a shard of its own.
  std::vector<NamedTensors> shards(1);
  uint64_t current = 0, total = 0;
  for (const auto& nt : tensors) {
    uint64_t bytes = static_cast<uint64_t>(nt.second.numel()) * nt.second.element_size();
    total += bytes;
    if (bytes > options.max_shard_bytes) {
      shards.push_back({nt});
      shards.emplace_back();
      current = 0;
      continue;
    }
    if (current + bytes > options.max_shard_bytes && !shards.back().empty()) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += bytes;
  }
  std::vector<NamedTensors> nonempty;
  for (auto& s : shards)
    if (!s.empty()) nonempty.push_back(std::move(s));
  if (nonempty.size() <= 1) {
    write_safetensors(model_dir / weights_file_name(options.variant), nonempty.empty() ? NamedTensors{} : nonempty[0]);
    return;
  }
  nlohmann::json index;
  index["metadata"]["total_size"] = total;
  char buf[64];
  for (size_t i = 0; i < nonempty.size(); ++i) {
    std::snprintf(buf, sizeof buf, "-%05zu-of-%05zu", i + 1, nonempty.size());
    std::string fname = base + buf + ".safetensors";
    write_safetensors(model_dir / fname, nonempty[i]);
    for (const auto& nt : nonempty[i]) index["weight_map"][nt.first] = fname;
  }
  std::ofstream out(model_dir / weights_index_name(options.variant));
  out << index.dump(2) << "\n";
  if (!out) throw ModelIoError("cannot write the shard index in '" + model_dir.string() + "'");
}

}  // namespace prefdiff::model_io
