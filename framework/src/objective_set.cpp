#include "prefdiff/host/objective_set.hpp"

#include <stdexcept>

#include "prefdiff/host/host_services.hpp"
#include "prefdiff/host/recipe.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff {

void ObjectiveOutputs::resize(size_t count) {
  loss.assign(count, 0.0);
  dloss_dmodel_w.assign(count, 0.0);
  dloss_dmodel_l.assign(count, 0.0);
  margin.assign(count, 0.0);
  diagnostics.clear();
}

ObjectiveInstance::ObjectiveInstance(const LoadedPlugin& plugin, const nlohmann::json& params) : plugin_(plugin) {
  if (plugin.kind() != PD_KIND_OBJECTIVE) throw std::runtime_error("plugin '" + plugin.id() + "' is not an objective");
  // Schema defaults for whatever the caller left out (recipes arrive complete; direct callers may not).
  nlohmann::json complete = params;
  for (const KeySpec& spec : plugin.params)
    if (!complete.contains(spec.name) && !spec.default_value.is_null()) complete[spec.name] = spec.default_value;
  std::vector<std::string> storage;
  const std::vector<pd_param_value> values = to_param_values(plugin, complete, storage);
  sdk::ErrorBuffer error;
  const pd_status status = functions().create(host_services(), values.data(), static_cast<uint32_t>(values.size()),
                                              &instance_, error.get());
  if (status != PD_OK)
    throw std::runtime_error("objective '" + plugin.id() + "' refused its parameters: " + error.message());
}

ObjectiveInstance::~ObjectiveInstance() {
  if (instance_ != nullptr) functions().destroy(instance_);
}

const pd_objective_functions& ObjectiveInstance::functions() const {
  return *static_cast<const pd_objective_functions*>(plugin_.descriptor->functions);
}

void ObjectiveInstance::evaluate(const ObjectiveInputs& inputs, ObjectiveOutputs& outputs) {
  const size_t n = inputs.model_w.size();
  if (inputs.model_l.size() != n || inputs.ref_w.size() != n || inputs.ref_l.size() != n ||
      (!inputs.timestep.empty() && inputs.timestep.size() != n))
    throw std::invalid_argument("objective inputs have different lengths");
  outputs.resize(n);
  const pd_objective_functions& f = functions();
  std::vector<double> diagnostics(f.diagnostic_count, 0.0);
  pd_objective_inputs in{};
  in.struct_size = sizeof(in);
  in.count = n;
  in.model_w = inputs.model_w.data();
  in.model_l = inputs.model_l.data();
  in.ref_w = inputs.ref_w.data();
  in.ref_l = inputs.ref_l.data();
  in.timestep = inputs.timestep.empty() ? nullptr : inputs.timestep.data();
  in.step = inputs.step;
  in.global_count = inputs.global_count != 0 ? inputs.global_count : n;
  pd_objective_outputs out{};
  out.struct_size = sizeof(out);
  out.diagnostic_capacity = f.diagnostic_count;
  out.loss = outputs.loss.data();
  out.dloss_dmodel_w = outputs.dloss_dmodel_w.data();
  out.dloss_dmodel_l = outputs.dloss_dmodel_l.data();
  out.margin = outputs.margin.data();
  out.diagnostics = diagnostics.data();
  sdk::ErrorBuffer error;
  const pd_status status = f.evaluate(instance_, &in, &out, error.get());
  if (status != PD_OK)
    throw std::runtime_error("objective '" + plugin_.id() + "' failed (" + sdk::status_name(status) + "): " +
                             error.message());
  for (uint32_t i = 0; i < f.diagnostic_count; ++i) outputs.diagnostics[f.diagnostic_names[i]] = diagnostics[i];
}

bool ObjectiveInstance::stateful() const { return functions().save_state != nullptr && functions().load_state != nullptr; }

std::string ObjectiveInstance::save_state() {
  if (!stateful()) return std::string();
  sdk::ErrorBuffer error;
  size_t size = 0;
  pd_status status = functions().save_state(instance_, nullptr, &size, error.get());
  if (status != PD_OK && status != PD_ERR_BUFFER_TOO_SMALL)
    throw std::runtime_error("objective '" + plugin_.id() + "' could not save its state: " + error.message());
  std::string state(size, '\0');
  error.reset();
  status = functions().save_state(instance_, state.data(), &size, error.get());
  if (status != PD_OK)
    throw std::runtime_error("objective '" + plugin_.id() + "' could not save its state: " + error.message());
  state.resize(size);
  return state;
}

void ObjectiveInstance::load_state(const std::string& state) {
  if (!stateful()) return;
  sdk::ErrorBuffer error;
  if (functions().load_state(instance_, state.data(), state.size(), error.get()) != PD_OK)
    throw std::runtime_error("objective '" + plugin_.id() + "' could not load its state: " + error.message());
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
