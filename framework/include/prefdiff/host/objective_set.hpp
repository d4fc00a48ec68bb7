// Objective plugin instances as the host uses them: one instance per [[objective]] entry, and the
// weighted sum of their losses and gradients (TRL `loss_type` lists / Axolotl `dpo_loss_weights`).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/conformance.hpp"
#include "prefdiff/host/plugin_registry.hpp"
#include "prefdiff/objective.h"

namespace prefdiff {

struct Recipe;

// Per-pair outputs (not divided by the batch size) and named batch diagnostics.
struct ObjectiveOutputs {
  std::vector<double> loss, dloss_dmodel_w, dloss_dmodel_l, margin;
  std::map<std::string, double> diagnostics;
  void resize(size_t count);
};

// Plain host vectors of one micro-batch (this rank's pairs): the conformance kit's Batch, which the
// instances below hand to the plugin as they are (global_count: pairs over all ranks; 0 = this rank's).
using ObjectiveInputs = conformance::Batch;

class ObjectiveInstance {
 public:
  // Throws std::runtime_error carrying the plugin's own message when create() refuses.
  ObjectiveInstance(const LoadedPlugin& plugin, const nlohmann::json& params);
  ~ObjectiveInstance();
  ObjectiveInstance(const ObjectiveInstance&) = delete;
  ObjectiveInstance& operator=(const ObjectiveInstance&) = delete;

  void evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& outputs);
  bool stateful() const;
  std::string save_state();
  void load_state(const std::string& state);
  const LoadedPlugin& plugin() const { return plugin_; }

 private:
  LoadedPlugin plugin_;
  const pd_objective_functions* functions_ = nullptr;
  std::unique_ptr<conformance::ObjectiveInstance> impl_;
};

class ObjectiveSet {
 public:
  // One instance per resolved [[objective]] entry of the recipe.
  ObjectiveSet(const nlohmann::json& objective_entries, const PluginRegistry& registry);

  // Weighted sums of loss and gradients; margin from the first objective; diagnostics as
  // "<id>/<name>" (and bare "<name>" when there is a single objective).
  void evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& combined);

  size_t size() const { return entries_.size(); }
  ObjectiveInstance& instance(size_t i) { return *entries_[i].instance; }
  double weight(size_t i) const { return entries_[i].weight; }

 private:
  struct Entry {
    double weight;
    std::unique_ptr<ObjectiveInstance> instance;
  };
  std::vector<Entry> entries_;
  ObjectiveOutputs scratch_;
};

}  // namespace prefdiff
