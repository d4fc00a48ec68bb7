#include "state_io.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace prefdiff::optim::detail {

std::string shape_string(at::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_parameters(const NamedTensors& named_parameters, const std::string& who) {
  std::vector<std::string> problems;
  std::set<std::string> names;
  std::unordered_map<const void*, std::string> impls;
  for (const auto& [name, p] : named_parameters) {
    if (name.empty()) problems.push_back("a parameter has an empty name");
    if (!names.insert(name).second) problems.push_back("parameter name '" + name + "' appears twice");
    if (!p.defined()) {
      problems.push_back("parameter '" + name + "' is an undefined tensor");
      continue;
    }
    if (!p.is_floating_point())
      problems.push_back("parameter '" + name + "' has dtype " + std::string(c10::toString(p.scalar_type())) +
                         "; only floating-point tensors can be optimized");
    auto [it, inserted] = impls.emplace(p.unsafeGetTensorImpl(), name);
    if (!inserted) problems.push_back("parameters '" + it->second + "' and '" + name + "' are the same tensor");
  }
  throw_if_problems(who, problems, "pass each trainable tensor once, under its diffusers name");
}

at::Tensor step_tensor(int64_t step) { return at::scalar_tensor(step, at::TensorOptions().dtype(at::kLong)); }

std::vector<std::map<std::string, at::Tensor>> group_state(const NamedTensors& state,
                                                           const std::vector<std::string>& param_names,
                                                           const std::vector<std::string>& kinds,
                                                           std::vector<std::string>& problems) {
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < param_names.size(); ++i) index.emplace(param_names[i], i);
  const std::unordered_set<std::string> kind_set(kinds.begin(), kinds.end());
  std::vector<std::map<std::string, at::Tensor>> grouped(param_names.size());
  for (const auto& [name, t] : state) {
    const size_t dot = name.find('.');
    const std::string kind = dot == std::string::npos ? name : name.substr(0, dot);
    if (dot == std::string::npos || !kind_set.count(kind)) {
      std::string expected;
      for (const auto& k : kinds) expected += (expected.empty() ? "" : ", ") + k + ".<param>";
      problems.push_back("unexpected state entry '" + name + "' (expected " + expected + ")");
      continue;
    }
    const std::string param = name.substr(dot + 1);
    auto it = index.find(param);
    if (it == index.end()) {
      problems.push_back("state entry '" + name + "' names no parameter of this optimizer");
      continue;
    }
    if (!t.defined()) {
      problems.push_back("state entry '" + name + "' is an undefined tensor");
      continue;
    }
    if (!grouped[it->second].emplace(kind, t).second) problems.push_back("state entry '" + name + "' appears twice");
  }
  return grouped;
}

at::Tensor take_tensor(const std::map<std::string, at::Tensor>& entries, const std::string& kind,
                       const std::string& param, at::IntArrayRef shape, const at::TensorOptions& like,
                       std::vector<std::string>& problems) {
  const std::string key = kind + "." + param;
  auto it = entries.find(kind);
  if (it == entries.end()) {
    problems.push_back("missing state entry '" + key + "'");
    return {};
  }
  const at::Tensor& t = it->second;
  if (t.sizes() != shape) {
    problems.push_back("state entry '" + key + "' has shape " + shape_string(t.sizes()) + " but the parameter needs " +
                       shape_string(shape));
    return {};
  }
  // A silent cast would break bit-identical resume (and fp32 -> bf16 would lose the state).
  if (t.scalar_type() != c10::typeMetaToScalarType(like.dtype())) {
    problems.push_back("state entry '" + key + "' has dtype " + std::string(c10::toString(t.scalar_type())) +
                       " but this optimizer keeps " +
                       std::string(c10::toString(c10::typeMetaToScalarType(like.dtype()))));
    return {};
  }
  return t.to(like.device(), t.scalar_type(), /*non_blocking=*/false, /*copy=*/true).contiguous();
}

int64_t take_step(const std::map<std::string, at::Tensor>& entries, const std::string& key_kind,
                  const std::string& param, std::vector<std::string>& problems) {
  const std::string key = param.empty() ? key_kind : key_kind + "." + param;
  auto it = entries.find(key_kind);
  if (it == entries.end()) {
    problems.push_back("missing state entry '" + key + "'");
    return -1;
  }
  const at::Tensor& t = it->second;
  if (t.numel() != 1 || t.scalar_type() != at::kLong) {
    problems.push_back("state entry '" + key + "' must be one int64 value, got " +
                       std::string(c10::toString(t.scalar_type())) + " " + shape_string(t.sizes()));
    return -1;
  }
  const int64_t step = t.item<int64_t>();
  if (step < 0) {
    problems.push_back("state entry '" + key + "' is negative (" + std::to_string(step) + ")");
    return -1;
  }
  return step;
}

void throw_if_problems(const std::string& who, const std::vector<std::string>& problems, const std::string& hint) {
  if (problems.empty()) return;
  std::string msg = who + ": " + std::to_string(problems.size()) + " problem" + (problems.size() > 1 ? "s" : "") + ":";
  const size_t shown = std::min<size_t>(problems.size(), 20);
  for (size_t i = 0; i < shown; ++i) msg += "\n  - " + problems[i];
  if (shown < problems.size()) msg += "\n  - ... and " + std::to_string(problems.size() - shown) + " more";
  if (!hint.empty()) msg += "\nHINT: " + hint;
  throw OptimError(msg);
}

}  // namespace prefdiff::optim::detail
