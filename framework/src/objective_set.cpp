#include "prefdiff/host/objective_set.hpp"

#include <stdexcept>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/recipe.hpp"
#include "prefdiff/conformance.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff {

void ObjectiveOutputs::resize(size_t count) {
  loss.assign(count, 0.0);
  dloss_dmodel_w.assign(count, 0.0);
  dloss_dmodel_l.assign(count, 0.0);
  margin.assign(count, 0.0);
  diagnostics.clear();
}

// The C ABI calls live once, in the SDK's conformance kit (prefdiff::conformance::ObjectiveInstance); this
// class gives them the host's service table, recipe parameters, and errors worded for recipe users.
ObjectiveInstance::ObjectiveInstance(const LoadedPlugin& plugin, const nlohmann::json& params) : plugin_(plugin) {
  if (plugin.kind() != PD_KIND_OBJECTIVE) throw std::runtime_error("plugin '" + plugin.id() + "' is not an objective");
  // Schema defaults for whatever the caller left out (recipes arrive complete; direct callers may not).
  nlohmann::json complete = params;
  for (const KeySpec& spec : plugin.params)
    if (!complete.contains(spec.name) && !spec.default_value.is_null()) complete[spec.name] = spec.default_value;
  std::vector<std::string> storage;
  const std::vector<pd_param_value> values = to_param_values(plugin, complete, storage);
  try {
    functions_ = &conformance::objective_functions(*plugin.descriptor);
    impl_ = std::make_unique<conformance::ObjectiveInstance>(*plugin.descriptor, values, host_services());
  } catch (const conformance::PluginError& e) {
    throw std::runtime_error("objective '" + plugin.id() + "' refused its parameters: " +
                             (e.plugin_message().empty() ? std::string(e.what()) : e.plugin_message()));
  }
}

ObjectiveInstance::~ObjectiveInstance() = default;

void ObjectiveInstance::evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& outputs) {
  const size_t n = inputs.model_w.size();
  if (inputs.model_l.size() != n || inputs.ref_w.size() != n || inputs.ref_l.size() != n ||
      (!inputs.timestep.empty() && inputs.timestep.size() != n))
    throw std::invalid_argument("objective inputs have different lengths");
  conformance::Evaluation result = impl_->evaluate(inputs);
  if (result.status != PD_OK)
    throw std::runtime_error("objective '" + plugin_.id() + "' failed (" + sdk::status_name(result.status) + "): " +
                             result.message);
  outputs.loss = std::move(result.loss);
  outputs.dloss_dmodel_w = std::move(result.dloss_dmodel_w);
  outputs.dloss_dmodel_l = std::move(result.dloss_dmodel_l);
  outputs.margin = std::move(result.margin);
  outputs.diagnostics.clear();
  for (uint32_t i = 0; i < functions_->diagnostic_count; ++i)
    outputs.diagnostics[functions_->diagnostic_names[i]] = result.diagnostics[i];
}

bool ObjectiveInstance::stateful() const { return functions_->save_state != nullptr && functions_->load_state != nullptr; }

std::string ObjectiveInstance::save_state() {
  if (!stateful()) return std::string();
  try {
    return impl_->save_state();
  } catch (const conformance::PluginError& e) {
    throw std::runtime_error("objective '" + plugin_.id() + "' could not save its state: " + e.plugin_message());
  }
}

void ObjectiveInstance::load_state(const std::string& state) {
  if (!stateful()) return;
  std::string message;
  if (impl_->load_state(state, &message) != PD_OK)
    throw std::runtime_error("objective '" + plugin_.id() + "' could not load its state: " + message);
}

ObjectiveSet::ObjectiveSet(const nlohmann::json& objective_entries, const PluginRegistry& registry) {
  for (const auto& entry : objective_entries) {
    const std::string id = entry.at("id").get<std::string>();
    const LoadedPlugin* plugin = registry.find(id);
    if (plugin == nullptr) throw std::runtime_error("objective '" + id + "' is not on the plugin path");
    nlohmann::json params = entry;
    params.erase("id");
    params.erase("weight");
    entries_.push_back({entry.value("weight", 1.0), std::make_unique<ObjectiveInstance>(*plugin, params)});
  }
  if (entries_.empty()) throw std::runtime_error("no objective configured");
}

void ObjectiveSet::evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& combined) {
  const size_t n = inputs.model_w.size();
  combined.resize(n);
  for (size_t k = 0; k < entries_.size(); ++k) {
    Entry& entry = entries_[k];
    entry.instance->evaluate(inputs, scratch_);
    for (size_t i = 0; i < n; ++i) {
      combined.loss[i] += entry.weight * scratch_.loss[i];
      combined.dloss_dmodel_w[i] += entry.weight * scratch_.dloss_dmodel_w[i];
      combined.dloss_dmodel_l[i] += entry.weight * scratch_.dloss_dmodel_l[i];
    }
    if (k == 0) combined.margin = scratch_.margin;
    const std::string id = entry.instance->plugin().id();
    for (const auto& [name, value] : scratch_.diagnostics) {
      combined.diagnostics[id + "/" + name] = value;
      if (entries_.size() == 1) combined.diagnostics[name] = value;
    }
  }
}

}  // namespace prefdiff
