#pragma once
// Strict loading of a checkpoint whose tensor names (and layouts) differ from the model's: each model
// tensor names the file tensor it comes from, copied, transposed, or as one row block of a fused tensor
// (OpenCLIP's in_proj_weight holds q, k and v). Every missing, unexpected, mis-shaped or non-float tensor
// is listed in one model_io::ModelIoError naming the file and the tensor; nothing is modified on error.

#include <functional>
#include <string>

#include "model_folder/weight_files.hpp"
#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::model_folder {

// Where one model tensor comes from.
struct TensorSource {
  enum class Op { kCopy, kTranspose, kRowBlock };
  std::string name;  // the tensor's name in the file
  Op op = Op::kCopy;
  int64_t block = 0, blocks = 1;  // kRowBlock: rows [block*n, (block+1)*n) of a [blocks*n, ...] file tensor

  static TensorSource copy(std::string n) { return {std::move(n), Op::kCopy, 0, 1}; }
  static TensorSource transpose(std::string n) { return {std::move(n), Op::kTranspose, 0, 1}; }
  static TensorSource row_block(std::string n, int64_t b, int64_t bs) { return {std::move(n), Op::kRowBlock, b, bs}; }
};

struct KeyMap {
  // The file tensor for a model tensor name. Unset: the same name, copied.
  std::function<TensorSource(const std::string& model_name)> source;
  // File tensors that are known and deliberately skipped (e.g. transformers' old position_ids buffers).
  std::function<bool(const std::string& file_name)> ignored;
};

// Copies into `targets` (the model's named parameters and buffers; dtype and device converted). `what`
// names the model in the message ("the VAE"); `hint` ends it.
void load_mapped(const model_io::NamedTensors& targets, const WeightFiles& files, const KeyMap& map,
                 const std::string& what, const std::string& hint);

}  // namespace prefdiff::model_folder
