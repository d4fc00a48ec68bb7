// Calling a noise-injector plugin through the C ABI: one RAII instance, every call named.
#include "prefdiff/instance/noise_instance.hpp"

#include <stdexcept>

#include "prefdiff/instance/plugin_call.hpp"
#include "create_instance.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::instance {

NoiseInstance::NoiseInstance(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host)
    : plugin_(plugin), params_(std::move(params)), label_(plugin.label()) {
  if (plugin.kind() != PD_KIND_NOISE_INJECTOR)
    throw PluginError(PD_ERR_INVALID_ARGUMENT, plugin.label() + " is not a noise injector");
  functions_ = static_cast<const pd_noise_functions*>(plugin.descriptor->functions);
  instance_ = create_instance(*functions_, host, params_, label_, "noise injector", plugin.id());
}

NoiseInstance::~NoiseInstance() {
  if (instance_ == nullptr) return;
  try {
    call_plugin(label_, "destroy()", [&] { functions_->destroy(instance_); });
  } catch (const PluginError&) {
  }
}

std::vector<uint8_t> NoiseInstance::decide(const NoiseBatch& batch, const std::string& where) {
  const size_t n = batch.pair_ids.size();
  if (batch.metadata.size() != batch.metadata_names.size())
    throw std::invalid_argument("noise batch: metadata names and columns differ in number");
  std::vector<const char*> names;
  std::vector<const double*> columns;
  for (size_t c = 0; c < batch.metadata.size(); ++c) {
    if (batch.metadata[c].size() != n) throw std::invalid_argument("noise batch: a metadata column has the wrong length");
    names.push_back(batch.metadata_names[c].c_str());
    columns.push_back(batch.metadata[c].data());
  }
  pd_noise_inputs inputs{};
  inputs.struct_size = sizeof(pd_noise_inputs);
  inputs.metadata_count = static_cast<uint32_t>(names.size());
  inputs.count = n;
  inputs.pair_ids = batch.pair_ids.data();
  inputs.metadata_names = names.data();
  inputs.metadata = columns.data();
  inputs.dataset_size = batch.dataset_size != 0 ? batch.dataset_size : n;
  std::vector<uint8_t> flips(n, 0);
  pd_noise_outputs outputs{};
  outputs.struct_size = sizeof(pd_noise_outputs);
  outputs.flip = flips.data();
  sdk::ErrorBuffer error;
  const pd_status status =
      call_plugin(label_, "decide()", [&] { return functions_->decide(instance_, &inputs, &outputs, error.get()); });
  if (status != PD_OK)
    throw PluginError(status, "noise injector on dataset " + where + ": " + error.message() + " [" +
                                  sdk::status_name(status) + "] (" + label_ + ")",
                      error.message());
  return flips;
}

}  // namespace prefdiff::instance
