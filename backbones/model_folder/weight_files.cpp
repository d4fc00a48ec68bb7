// Single-file or sharded checkpoints of any of the Hugging Face folder layouts.
#include "model_folder/weight_files.hpp"

#include "prefdiff/model_io/diffusers_folder.hpp"

#include <sstream>

namespace prefdiff::model_folder {

namespace fs = std::filesystem;
using model_io::ModelIoError;

WeightFiles WeightFiles::open_file(const fs::path& file) {
  WeightFiles w;
  w.files_.push_back(model_io::SafetensorsFile::open(file));
  for (const auto& t : w.files_[0].header().tensors) w.where_[t.name] = 0;
  w.description_ = "'" + file.string() + "'";
  return w;
}

WeightFiles WeightFiles::open_folder(const fs::path& dir, const std::string& base_name, const std::string& variant) {
  const fs::path single = dir / model_io::add_variant(base_name + ".safetensors", variant);
  const fs::path index = dir / model_io::add_variant(base_name + ".safetensors.index.json", variant);
  if (fs::is_regular_file(single)) return open_file(single);
  if (fs::is_regular_file(index)) {
    WeightFiles w;
    nlohmann::json j = model_io::read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw ModelIoError("'" + index.string() + "' has no \"weight_map\" object");
    std::map<std::string, size_t> file_idx;
    for (const auto& [tensor, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw ModelIoError("'" + index.string() + "': weight_map[\"" + tensor + "\"] is not a string");
      const std::string fname = file.get<std::string>();
      if (fname.find('/') != std::string::npos || fname == "..")
        throw ModelIoError("'" + index.string() + "': shard name '" + fname + "' must be a plain file name");
      auto it = file_idx.find(fname);
      if (it == file_idx.end()) {
        w.files_.push_back(model_io::SafetensorsFile::open(dir / fname));
        it = file_idx.emplace(fname, w.files_.size() - 1).first;
      }
      if (!w.files_[it->second].contains(tensor))
        throw ModelIoError("'" + index.string() + "' maps tensor '" + tensor + "' to '" + fname +
                           "', which does not contain it. HINT: the shards and the index are from different saves.");
      w.where_[tensor] = it->second;
    }
    std::ostringstream d;
    d << "'" << dir.string() << "' (" << w.files_.size() << " shards of '" << index.filename().string() << "')";
    w.description_ = d.str();
    return w;
  }
  std::string msg = "no weights in '" + dir.string() + "': expected '" + single.filename().string() + "' or '" +
                    index.filename().string() + "'.";
  const fs::path fp16 = dir / model_io::add_variant(base_name + ".safetensors", "fp16");
  if (variant.empty() && fs::is_regular_file(fp16))
    msg += " HINT: only the 'fp16' variant is present; load it with variant \"fp16\".";
  else if (!variant.empty() && fs::is_regular_file(dir / (base_name + ".safetensors")))
    msg += " HINT: the folder has no '" + variant + "' variant; load it without a variant.";
  else if (fs::is_regular_file(dir / (base_name + ".bin")) || fs::is_regular_file(dir / "pytorch_model.bin"))
    msg += " HINT: only a pickle .bin checkpoint is present; re-save it with save_pretrained(safe_serialization=True)"
           " or convert it with safetensors' torch.save_file.";
  throw ModelIoError(msg);
}

std::vector<std::string> WeightFiles::names() const {
  std::vector<std::string> out;
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

bool WeightFiles::any_name_starts_with(const std::string& prefix) const {
  auto it = where_.lower_bound(prefix);
  return it != where_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
}

const model_io::TensorEntry& WeightFiles::entry(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError(description_ + " has no tensor '" + name + "'");
  return files_[it->second].entry(name);
}

at::Tensor WeightFiles::view(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError(description_ + " has no tensor '" + name + "'");
  return files_[it->second].view(name);
}

const fs::path& WeightFiles::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw ModelIoError(description_ + " has no tensor '" + name + "'");
  return files_[it->second].path();
}

}  // namespace prefdiff::model_folder
