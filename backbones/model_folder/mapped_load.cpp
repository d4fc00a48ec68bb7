// Strict, all-problems-at-once loading through a name/layout map.
#include "model_folder/mapped_load.hpp"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <set>
#include <sstream>

namespace prefdiff::model_folder {

namespace {

using model_io::StDtype;

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "," : "") + std::to_string(s[i]);
  return out + "]";
}

// The shape the file tensor must have for a model tensor of shape `model`.
std::vector<int64_t> file_shape(const TensorSource& src, at::IntArrayRef model) {
  std::vector<int64_t> s(model.begin(), model.end());
  if (src.op == TensorSource::Op::kTranspose && s.size() == 2) std::swap(s[0], s[1]);
  if (src.op == TensorSource::Op::kRowBlock && !s.empty()) s[0] *= src.blocks;
  return s;
}

at::Tensor apply(const TensorSource& src, const at::Tensor& file_tensor) {
  switch (src.op) {
    case TensorSource::Op::kTranspose: return file_tensor.t();
    case TensorSource::Op::kRowBlock: {
      int64_t rows = file_tensor.size(0) / src.blocks;
      return file_tensor.narrow(0, src.block * rows, rows);
    }
    default: return file_tensor;
  }
}

bool is_float(StDtype d) { return d == StDtype::F32 || d == StDtype::F16 || d == StDtype::BF16 || d == StDtype::F64; }

}  // namespace

void load_mapped(const model_io::NamedTensors& targets, const WeightFiles& files, const KeyMap& map,
                 const std::string& what, const std::string& hint) {
  std::vector<std::string> problems;
  std::set<std::string> used;
  std::vector<TensorSource> sources;
  for (const auto& [name, t] : targets) {
    TensorSource src = map.source ? map.source(name) : TensorSource::copy(name);
    sources.push_back(src);
    used.insert(src.name);
    const std::string for_model = src.name == name ? "" : " (for the model's '" + name + "')";
    const std::vector<int64_t> want = file_shape(src, t.sizes());
    if (!files.contains(src.name)) {
      problems.push_back("missing tensor '" + src.name + "' " + shape_str(want) + for_model);
      continue;
    }
    const model_io::TensorEntry& e = files.entry(src.name);
    const std::string file = files.file_of(src.name).filename().string();
    if (e.shape != want)
      problems.push_back("tensor '" + src.name + "' has shape " + shape_str(e.shape) + " in '" + file +
                         "' but the model expects " + shape_str(want) + for_model);
    else if (!is_float(e.dtype))
      problems.push_back("tensor '" + src.name + "' in '" + file + "' has dtype " + model_io::st_dtype_name(e.dtype) +
                         " (expected F32, F16, BF16 or F64)");
  }
  for (const auto& n : files.names())
    if (!used.count(n) && !(map.ignored && map.ignored(n)))
      problems.push_back("unexpected tensor '" + n + "' in '" + files.file_of(n).filename().string() + "'");
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << "cannot load " << what << " from " << files.description() << ": " << problems.size() << " problem(s):";
    size_t shown = 0;
    for (const auto& p : problems) {
      if (shown++ == 25) {
        msg << "\n  ... and " << problems.size() - 25 << " more";
        break;
      }
      msg << "\n  " << p;
    }
    if (!hint.empty()) msg << "\nHINT: " << hint;
    throw model_io::ModelIoError(msg.str());
  }
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i) {
    at::Tensor dst = targets[i].second;  // shares storage with the parameter
    dst.copy_(apply(sources[i], files.view(sources[i].name)));
  }
}

}  // namespace prefdiff::model_folder
