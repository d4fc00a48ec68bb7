#pragma once
// Shared by the optimizers and the EMA: parameter checks and the "<kind>.<param>" state layout.

#include "prefdiff/optim/optimizer.hpp"

#include <map>
#include <string>
#include <vector>

namespace prefdiff::optim::detail {

// Defined, floating point, distinct tensors with unique non-empty names; `who` prefixes errors.
void check_parameters(const NamedTensors& named_parameters, const std::string& who);

// A 0-dim int64 CPU tensor, the stored form of every step counter.
at::Tensor step_tensor(int64_t step);

// Splits "<kind>.<param>" names of `state` into one map kind -> tensor per parameter (index as in
// `param_names`). Names with an unknown kind or parameter, and duplicates, go to `problems`.
std::vector<std::map<std::string, at::Tensor>> group_state(const NamedTensors& state,
                                                           const std::vector<std::string>& param_names,
                                                           const std::vector<std::string>& kinds,
                                                           std::vector<std::string>& problems);

// Checks one stored tensor against the live layout; on success returns it copied to `like`'s device and
// dtype (a fresh tensor, never aliasing the checkpoint's buffer).
at::Tensor take_tensor(const std::map<std::string, at::Tensor>& entries, const std::string& kind,
                       const std::string& param, at::IntArrayRef shape, const at::TensorOptions& like,
                       std::vector<std::string>& problems);

// The step counter "step.<param>": a non-negative integer scalar; -1 (and a problem) otherwise.
int64_t take_step(const std::map<std::string, at::Tensor>& entries, const std::string& key_kind,
                  const std::string& param, std::vector<std::string>& problems);

// Throws OptimError listing every problem, if any.
void throw_if_problems(const std::string& who, const std::vector<std::string>& problems, const std::string& hint);

std::string shape_string(at::IntArrayRef shape);

}  // namespace prefdiff::optim::detail
