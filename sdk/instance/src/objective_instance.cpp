// Calling an objective plugin through the C ABI: one RAII instance, every call named.
#include "prefdiff/instance/objective_instance.hpp"

#include <cmath>
#include <limits>
#include <string>

#include "create_instance.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::instance {

ObjectiveInstance::ObjectiveInstance(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host)
    : plugin_(plugin), params_(std::move(params)), label_(plugin.label()) {
  if (plugin.kind() != PD_KIND_OBJECTIVE)
    throw PluginError(PD_ERR_INVALID_ARGUMENT, plugin.label() + " is not an objective");
  functions_ = static_cast<const pd_objective_functions*>(plugin.descriptor->functions);
  for (uint32_t i = 0; i < functions_->diagnostic_count; ++i) diagnostic_names_.push_back(functions_->diagnostic_names[i]);
  instance_ = create_instance(*functions_, host, params_, label_, "objective", plugin.id());
}

ObjectiveInstance::~ObjectiveInstance() {
  if (instance_ == nullptr) return;
  try {
    call_plugin(label_, "destroy()", [&] { functions_->destroy(instance_); });
  } catch (const PluginError&) {
    // A destructor cannot throw; the plugin broke the ABI while being torn down, nothing else to do.
  }
}

Evaluation ObjectiveInstance::try_evaluate(const Batch& batch) {
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
  result.status = call_plugin(label_, "evaluate()",
                              [&] { return functions_->evaluate(instance_, &inputs, &outputs, error.get()); });
  result.message = error.message();
  return result;
}

Evaluation ObjectiveInstance::evaluate(const Batch& batch) {
  const size_t n = batch.size();
  for (const std::vector<double>* optional :
       {&batch.ref_w, &batch.ref_l, &batch.timestep, &batch.error_ww, &batch.error_wl, &batch.error_ll})
    if (batch.model_l.size() != n || (!optional->empty() && optional->size() != n))
      throw std::invalid_argument("objective inputs have different lengths");
  Evaluation result = try_evaluate(batch);
  if (result.status != PD_OK)
    throw PluginError(result.status, label_ + " failed at step " + std::to_string(batch.step) + " (" +
                                         sdk::status_name(result.status) + "): " + result.message,
                      result.message);
  const std::vector<double>* outputs[] = {&result.loss, &result.dloss_dmodel_w, &result.dloss_dmodel_l, &result.margin};
  const char* names[] = {"loss", "dloss_dmodel_w", "dloss_dmodel_l", "margin"};
  for (int k = 0; k < 4; ++k)
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite((*outputs[k])[i]))
        throw PluginError(PD_ERR_NON_FINITE, label_ + " returned a non-finite " + names[k] + " (" +
                                                 std::to_string((*outputs[k])[i]) + ") for pair " + std::to_string(i) +
                                                 " of " + std::to_string(n) + " at step " + std::to_string(batch.step));
  return result;
}

bool ObjectiveInstance::stateful() const { return (plugin_.descriptor->capabilities & PD_CAP_STATEFUL) != 0; }
bool ObjectiveInstance::batch_coupled() const { return (plugin_.descriptor->capabilities & PD_CAP_BATCH_COUPLED) != 0; }

namespace {
bool requests(const PluginLibrary& plugin, uint64_t capability) {
  return plugin.descriptor->abi_minor >= 1 && (plugin.descriptor->capabilities & capability) != 0;
}
}  // namespace

bool ObjectiveInstance::reference_free() const { return requests(plugin_, PD_CAP_REFERENCE_FREE); }
bool ObjectiveInstance::needs_error_inner_products() const {
  return requests(plugin_, PD_CAP_NEEDS_ERROR_INNER_PRODUCTS);
}

std::string ObjectiveInstance::save_state() {
  if (!stateful() || functions_->save_state == nullptr) return std::string();
  auto fail = [&](pd_status status, const std::string& message) {
    return PluginError(status, "objective '" + plugin_.id() + "' could not save its state: " + message, message);
  };
  sdk::ErrorBuffer error;
  size_t size = 0;
  pd_status status =
      call_plugin(label_, "save_state()", [&] { return functions_->save_state(instance_, nullptr, &size, error.get()); });
  if (status != PD_OK && status != PD_ERR_BUFFER_TOO_SMALL) throw fail(status, error.message());
  std::string state(size, '\0');
  error.reset();  // a size query may leave a message behind
  status = call_plugin(label_, "save_state()", [&] {
    return functions_->save_state(instance_, state.empty() ? nullptr : &state[0], &size, error.get());
  });
  if (status != PD_OK) throw fail(status, error.message());
  state.resize(size);
  return state;
}

pd_status ObjectiveInstance::try_load_state(const std::string& state, std::string* message_out) {
  if (!stateful() || functions_->load_state == nullptr) {
    if (message_out != nullptr) *message_out = "the plugin has no load_state";
    return PD_ERR_UNSUPPORTED;
  }
  sdk::ErrorBuffer error;
  const pd_status status = call_plugin(
      label_, "load_state()", [&] { return functions_->load_state(instance_, state.data(), state.size(), error.get()); });
  if (message_out != nullptr) *message_out = error.message();
  return status;
}

void ObjectiveInstance::load_state(const std::string& state) {
  if (!stateful()) return;
  std::string message;
  const pd_status status = try_load_state(state, &message);
  if (status != PD_OK)
    throw PluginError(status, "objective '" + plugin_.id() + "' could not load its state: " + message, message);
}

}  // namespace prefdiff::instance
