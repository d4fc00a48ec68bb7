// Calling an objective plugin through the C ABI: parameters with defaults, one RAII instance.
#include <cmath>
#include <limits>
#include <string>

#include "prefdiff/conformance.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::conformance {
namespace {

std::string plugin_name(const pd_plugin_descriptor& plugin) {
  return plugin.id != nullptr ? std::string(plugin.id) : std::string("(plugin without id)");
}

const char* type_name(uint32_t type) {
  switch (type) {
    case PD_PARAM_FLOAT: return "float";
    case PD_PARAM_INT: return "int";
    case PD_PARAM_BOOL: return "bool";
    case PD_PARAM_STRING: return "string";
  }
  return "unknown type";
}

}  // namespace

const pd_objective_functions& objective_functions(const pd_plugin_descriptor& plugin) {
  if (plugin.kind != PD_KIND_OBJECTIVE)
    throw PluginError(PD_ERR_INVALID_ARGUMENT, "plugin '" + plugin_name(plugin) + "' is of kind " +
                                                   std::to_string(plugin.kind) + ", not an objective (kind " +
                                                   std::to_string(PD_KIND_OBJECTIVE) + ")");
  const auto* functions = static_cast<const pd_objective_functions*>(plugin.functions);
  if (functions == nullptr || !PD_HAS_FIELD(functions, pd_objective_functions, load_state) ||
      functions->create == nullptr || functions->destroy == nullptr || functions->evaluate == nullptr)
    throw PluginError(PD_ERR_ABI_MISMATCH, "plugin '" + plugin_name(plugin) +
                                               "' has no complete objective function table (create, destroy, evaluate)");
  return *functions;
}

std::vector<pd_param_value> resolve_params(const pd_plugin_descriptor& plugin,
                                           const std::vector<pd_param_value>& overrides) {
  std::string known;
  for (uint32_t s = 0; s < plugin.param_count; ++s)
    known += std::string(s > 0 ? ", " : "") + (plugin.params[s].name != nullptr ? plugin.params[s].name : "?");
  std::vector<bool> given(plugin.param_count, false);
  for (size_t o = 0; o < overrides.size(); ++o) {
    const pd_param_value& value = overrides[o];
    const std::string name = value.name != nullptr ? value.name : "";
    uint32_t s = 0;
    while (s < plugin.param_count && (plugin.params[s].name == nullptr || name != plugin.params[s].name)) ++s;
    if (s == plugin.param_count)
      throw std::invalid_argument("plugin '" + plugin_name(plugin) + "' has no parameter '" + name +
                                  "'; its parameters are: " + (known.empty() ? "(none)" : known));
    if (given[s]) throw std::invalid_argument("parameter '" + name + "' is given twice");
    if (value.type != plugin.params[s].type)
      throw std::invalid_argument("parameter '" + name + "' of plugin '" + plugin_name(plugin) + "' is a " +
                                  type_name(plugin.params[s].type) + ", but a " + type_name(value.type) + " was given");
    given[s] = true;
  }
  std::vector<pd_param_value> resolved;
  for (uint32_t s = 0; s < plugin.param_count; ++s) {
    const pd_param_spec& spec = plugin.params[s];
    if (given[s]) {
      for (const pd_param_value& value : overrides)
        if (value.name != nullptr && spec.name != nullptr && std::string(value.name) == spec.name) resolved.push_back(value);
      continue;
    }
    if ((spec.bounds & PD_PARAM_OPTIONAL) != 0) continue;
    pd_param_value value{};
    value.struct_size = sizeof(pd_param_value);
    value.type = spec.type;
    value.name = spec.name;
    value.number = spec.default_number;
    value.string = spec.type == PD_PARAM_STRING ? spec.default_string : nullptr;
    resolved.push_back(value);
  }
  return resolved;
}

ObjectiveInstance::ObjectiveInstance(const pd_plugin_descriptor& plugin, const std::vector<pd_param_value>& params,
                                     const pd_host_services* host)
    : functions_(&objective_functions(plugin)) {
  sdk::ErrorBuffer error;
  const pd_status status = functions_->create(host, params.empty() ? nullptr : params.data(),
                                              static_cast<uint32_t>(params.size()), &instance_, error.get());
  if (status != PD_OK || instance_ == nullptr) {
    const std::string message = error.message();
    throw PluginError(status != PD_OK ? status : PD_ERR_INTERNAL,
                      "create() of plugin '" + plugin_name(plugin) + "' failed: " +
                          (!message.empty() ? message : std::string("no message (") + sdk::status_name(status) + ")"),
                      message);
  }
}

ObjectiveInstance::~ObjectiveInstance() {
  if (instance_ != nullptr) functions_->destroy(instance_);
}

Evaluation ObjectiveInstance::evaluate(const Batch& batch) {
  const size_t n = batch.size();
  Evaluation result;
  // NaN-filled outputs: a plugin that forgets to write one is caught by the finiteness checks.
  const double unset = std::numeric_limits<double>::quiet_NaN();
  result.loss.assign(n, unset);
  result.dloss_dmodel_w.assign(n, unset);
  result.dloss_dmodel_l.assign(n, unset);
  result.margin.assign(n, unset);
  result.diagnostics.assign(functions_->diagnostic_count, unset);

  pd_objective_inputs inputs{};
  inputs.struct_size = sizeof(pd_objective_inputs);
  inputs.count = n;
  inputs.model_w = batch.model_w.data();
  inputs.model_l = batch.model_l.data();
  auto optional = [](const std::vector<double>& v) { return v.empty() ? nullptr : v.data(); };
  inputs.ref_w = optional(batch.ref_w);
  inputs.ref_l = optional(batch.ref_l);
  inputs.timestep = optional(batch.timestep);
  inputs.step = batch.step;
  inputs.global_count = batch.global_count != 0 ? batch.global_count : n;
  inputs.error_ww = optional(batch.error_ww);
  inputs.error_wl = optional(batch.error_wl);
  inputs.error_ll = optional(batch.error_ll);

  pd_objective_outputs outputs{};
  outputs.struct_size = sizeof(pd_objective_outputs);
  outputs.diagnostic_capacity = static_cast<uint32_t>(result.diagnostics.size());
  outputs.loss = result.loss.data();
  outputs.dloss_dmodel_w = result.dloss_dmodel_w.data();
  outputs.dloss_dmodel_l = result.dloss_dmodel_l.data();
  outputs.margin = result.margin.data();
  outputs.diagnostics = result.diagnostics.empty() ? nullptr : result.diagnostics.data();

  sdk::ErrorBuffer error;
  result.status = functions_->evaluate(instance_, &inputs, &outputs, error.get());
  result.message = error.message();
  return result;
}

std::string ObjectiveInstance::save_state() {
  if (functions_->save_state == nullptr) throw PluginError(PD_ERR_UNSUPPORTED, "the plugin has no save_state");
  sdk::ErrorBuffer error;
  size_t size = 0;
  pd_status status = functions_->save_state(instance_, nullptr, &size, error.get());
  if (status != PD_OK && status != PD_ERR_BUFFER_TOO_SMALL)
    throw PluginError(status, "save_state (size query) failed: " + error.message(), error.message());
  std::string state(size, '\0');
  error.reset();  // a size query may leave a message behind
  status = functions_->save_state(instance_, state.empty() ? nullptr : &state[0], &size, error.get());
  if (status != PD_OK) throw PluginError(status, "save_state failed: " + error.message(), error.message());
  state.resize(size);
  return state;
}

pd_status ObjectiveInstance::load_state(const std::string& state, std::string* message_out) {
  if (functions_->load_state == nullptr) {
    if (message_out != nullptr) *message_out = "the plugin has no load_state";
    return PD_ERR_UNSUPPORTED;
  }
  sdk::ErrorBuffer error;
  const pd_status status = functions_->load_state(instance_, state.data(), state.size(), error.get());
  if (message_out != nullptr) *message_out = error.message();
  return status;
}

}  // namespace prefdiff::conformance
