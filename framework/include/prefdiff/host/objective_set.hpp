// The objectives of a run: one plugin instance per [[objective]] entry, and the weighted sum of their
// losses and gradients (TRL `loss_type` lists / Axolotl `dpo_loss_weights`).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/instance/objective_instance.hpp"

namespace prefdiff {

// Per-pair outputs (not divided by the batch size) and named batch diagnostics.
struct ObjectiveOutputs {
  std::vector<double> loss, dloss_dmodel_w, dloss_dmodel_l, margin;
  std::map<std::string, double> diagnostics;
  void resize(size_t count);
};

// Plain host vectors of one micro-batch (this rank's pairs), handed to every plugin as they are
// (global_count: pairs over all ranks; 0 = this rank's).
using ObjectiveInputs = instance::Batch;

class ObjectiveSet {
 public:
  ObjectiveSet() = default;
  // From resolved [[objective]] tables (a run folder's recipe.json, tests): each table is checked by the
  // resolver and instantiated. Throws std::runtime_error naming the problem.
  ObjectiveSet(const nlohmann::json& objective_entries, const PluginRegistry& registry);

  void add(double weight, std::unique_ptr<instance::ObjectiveInstance> instance);

  // Weighted sums of loss and gradients; margin from the first objective; diagnostics as
  // "<id>/<name>" (and bare "<name>" when there is a single objective). Throws instance::PluginError
  // naming the plugin when one fails or returns a non-finite number.
  void evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& combined);

  // What the objectives read beyond the policy's MSEs (ABI 1.1 capabilities), for the host to compute
  // only that: the reference is needed unless EVERY objective declares PD_CAP_REFERENCE_FREE; the error
  // inner products are needed when ANY objective declares PD_CAP_NEEDS_ERROR_INNER_PRODUCTS.
  bool needs_reference() const;
  bool needs_error_inner_products() const;

  size_t size() const { return entries_.size(); }
  instance::ObjectiveInstance& instance(size_t i) { return *entries_[i].instance; }
  const instance::ObjectiveInstance& instance(size_t i) const { return *entries_[i].instance; }
  double weight(size_t i) const { return entries_[i].weight; }

 private:
  struct Entry {
    double weight;
    std::unique_ptr<instance::ObjectiveInstance> instance;
  };
  std::vector<Entry> entries_;
};

}  // namespace prefdiff
