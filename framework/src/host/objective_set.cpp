#include "prefdiff/host/objective_set.hpp"

#include <stdexcept>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/param_json.hpp"

namespace prefdiff {

void ObjectiveOutputs::resize(size_t count) {
  loss.assign(count, 0.0);
  dloss_dmodel_w.assign(count, 0.0);
  dloss_dmodel_l.assign(count, 0.0);
  margin.assign(count, 0.0);
  diagnostics.clear();
}

ObjectiveSet::ObjectiveSet(const nlohmann::json& objective_entries, const PluginRegistry& registry) {
  for (const auto& entry : objective_entries) {
    const std::string id = entry.at("id").get<std::string>();
    const PluginLibrary* plugin = registry.find(id);
    if (plugin == nullptr) throw std::runtime_error("objective '" + id + "' is not on the plugin path");
    std::vector<instance::ParamProblem> problems;
    instance::ParamSet params = instance::resolve_params(plugin->params, given_from_json(entry), {"id", "weight"}, problems);
    if (!problems.empty()) throw std::runtime_error("[objective] '" + id + "' " + problems.front().message);
    add(entry.value("weight", 1.0), std::make_unique<instance::ObjectiveInstance>(*plugin, std::move(params), host_services()));
  }
  if (entries_.empty()) throw std::runtime_error("no objective configured");
}

void ObjectiveSet::add(double weight, std::unique_ptr<instance::ObjectiveInstance> instance) {
  entries_.push_back({weight, std::move(instance)});
}

bool ObjectiveSet::needs_reference() const {
  if (entries_.empty()) return true;
  for (const Entry& entry : entries_)
    if (!entry.instance->reference_free()) return true;
  return false;
}

bool ObjectiveSet::needs_error_inner_products() const {
  for (const Entry& entry : entries_)
    if (entry.instance->needs_error_inner_products()) return true;
  return false;
}

void ObjectiveSet::evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& combined) {
  const size_t n = inputs.model_w.size();
  combined.resize(n);
  for (size_t k = 0; k < entries_.size(); ++k) {
    Entry& entry = entries_[k];
    const instance::Evaluation e = entry.instance->evaluate(inputs);
    for (size_t i = 0; i < n; ++i) {
      combined.loss[i] += entry.weight * e.loss[i];
      combined.dloss_dmodel_w[i] += entry.weight * e.dloss_dmodel_w[i];
      combined.dloss_dmodel_l[i] += entry.weight * e.dloss_dmodel_l[i];
    }
    if (k == 0) combined.margin = e.margin;
    const std::string id = entry.instance->plugin().id();
    const std::vector<std::string>& names = entry.instance->diagnostic_names();
    for (size_t d = 0; d < names.size(); ++d) {
      combined.diagnostics[id + "/" + names[d]] = e.diagnostics[d];
      if (entries_.size() == 1) combined.diagnostics[names[d]] = e.diagnostics[d];
    }
  }
}

}  // namespace prefdiff
