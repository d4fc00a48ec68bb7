#pragma once
// diffusers model folders (spec: backbones.md section 5): config.json plus one weights file, or shards
// listed in an index, optionally under a variant name such as "fp16".

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::model_io {

// diffusers' _add_variant: "a.safetensors" + "fp16" -> "a.fp16.safetensors"; "" leaves the name alone.
std::string add_variant(const std::string& file_name, const std::string& variant);
std::string weights_file_name(const std::string& variant);   // diffusion_pytorch_model[.V].safetensors
std::string weights_index_name(const std::string& variant);  // diffusion_pytorch_model.safetensors.index[.V].json

// `root` may be a pipeline root (has <subfolder>/config.json) or the model folder itself.
std::filesystem::path resolve_model_dir(const std::filesystem::path& root, const std::string& subfolder = "unet");
// Parses a JSON file; errors name the path, then `hint` (what to do) when one is given.
nlohmann::json read_json_file(const std::filesystem::path& path, const std::string& hint = "");

// All tensors of a model folder's checkpoint (single file or shards), mapped read-only.
class CheckpointReader {
 public:
  static CheckpointReader open(const std::filesystem::path& model_dir, const std::string& variant = "");

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;
  at::Tensor view(const std::string& name) const;
  const std::filesystem::path& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
};

// Copies checkpoint tensors into `targets` by exact name, converting dtype and device. Every missing,
// unexpected or mis-shaped tensor is listed in one ModelIoError, and so is every tensor holding NaN or Inf
// (named with its file); nothing is modified when it throws.
void load_state_dict(const NamedTensors& targets, const CheckpointReader& source, const std::string& what);

struct SaveOptions {
  std::string variant;                           // e.g. "fp16" -> diffusion_pytorch_model.fp16.safetensors
  uint64_t max_shard_bytes = 10000000000ULL;     // diffusers' default max_shard_size "10GB"
};

// Writes config.json and the weights as diffusers' save_pretrained does (sharded with an index when the
// total exceeds max_shard_bytes). Stale weight files of the same variant are removed first.
void save_model_folder(const std::filesystem::path& model_dir, const nlohmann::json& config,
                       const NamedTensors& tensors, const SaveOptions& options = {});

}  // namespace prefdiff::model_io
