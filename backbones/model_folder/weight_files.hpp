#pragma once
// The safetensors files of one model, addressed by tensor name: a single file, or the shards a
// "<base>.safetensors.index.json" lists. Serves both layouts: diffusers ("diffusion_pytorch_model"),
// transformers ("model") and OpenCLIP ("open_clip_model"), with variants such as "fp16"
// ("model.fp16.safetensors"). Built on model_io's memory-mapped reader; views are zero-copy.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::model_folder {

class WeightFiles {
 public:
  // <dir>/<base>[.variant].safetensors, else the shards of <dir>/<base>.safetensors.index[.variant].json.
  // Errors (model_io::ModelIoError) name the folder and say what is there instead (other variant, .bin).
  static WeightFiles open_folder(const std::filesystem::path& dir, const std::string& base_name,
                                 const std::string& variant = "");
  static WeightFiles open_file(const std::filesystem::path& file);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  bool any_name_starts_with(const std::string& prefix) const;
  const model_io::TensorEntry& entry(const std::string& name) const;
  at::Tensor view(const std::string& name) const;  // read-only, aliases the mapping
  const std::filesystem::path& file_of(const std::string& name) const;
  // "'<dir>/model.safetensors'" or "'<dir>' (3 shards)", for messages.
  const std::string& description() const { return description_; }

 private:
  std::vector<model_io::SafetensorsFile> files_;
  std::map<std::string, size_t> where_;
  std::string description_;
};

}  // namespace prefdiff::model_folder
