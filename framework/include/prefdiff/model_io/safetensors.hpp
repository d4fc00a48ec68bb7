#pragma once
// safetensors reader (memory-mapped, zero-copy views) and writer (reference layout).

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/model_io/safetensors_header.hpp"

namespace prefdiff::model_io {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// c10 dtype of a safetensors dtype; throws ModelIoError naming `tensor_name` for dtypes LibTorch lacks.
c10::ScalarType st_dtype_to_scalar_type(StDtype dtype, const std::string& tensor_name);
StDtype scalar_type_to_st_dtype(c10::ScalarType type, const std::string& tensor_name);

// A safetensors file mapped read-only into memory. Tensors returned by view() alias the mapping (read-only
// pages: never write into them) and keep it alive; the file itself can be closed in the meantime.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const TensorEntry& entry(const std::string& name) const;
  std::vector<std::string> names() const;  // in file (offset) order

  // Zero-copy CPU tensor over the mapped bytes (copied once if the bytes are not aligned for the dtype).
  at::Tensor view(const std::string& name) const;
  // An owning copy, converted to `dtype` (kUndefined: keep the file's dtype).
  at::Tensor load(const std::string& name, c10::ScalarType dtype = c10::ScalarType::Undefined) const;
  // Every tensor, owning copies, in file order.
  NamedTensors load_all() const;

 private:
  struct Mapping;
  std::filesystem::path path_;
  std::shared_ptr<Mapping> map_;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// Writes tensors in the reference layout: __metadata__ first, entries sorted by dtype alignment (largest
// first) then name, contiguous data, header space-padded to a multiple of 8. Tensors may live on any
// device and have any strides. Writes to "<path>.tmp" and renames, so a crash never leaves a half file.
// Throws ModelIoError on duplicate names or I/O errors.
void write_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace prefdiff::model_io
