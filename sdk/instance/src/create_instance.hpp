// The create() call that objectives, noise injectors and dataset sources share (same signature in their
// function tables): the resolved parameters in, the plugin's instance out, a refusal turned into one
// PluginError naming the kind, the plugin and its message.
#pragma once

#include <string>
#include <vector>

#include "prefdiff/instance/params.hpp"
#include "prefdiff/instance/plugin_call.hpp"
#include "prefdiff/sdk.hpp"

namespace prefdiff::instance {

template <typename Functions>
pd_instance* create_instance(const Functions& functions, const pd_host_services* host, const ParamSet& params,
                             const std::string& label, const std::string& kind, const std::string& id) {
  sdk::ErrorBuffer error;
  const std::vector<pd_param_value>& values = params.abi();
  pd_instance* instance = nullptr;
  const pd_status status = call_plugin(label, "create()", [&] {
    return functions.create(host, values.empty() ? nullptr : values.data(), static_cast<uint32_t>(values.size()),
                            &instance, error.get());
  });
  if (status != PD_OK || instance == nullptr) {
    const std::string message = error.message();
    throw PluginError(status != PD_OK ? status : PD_ERR_INTERNAL,
                      kind + " '" + id + "' refused its parameters: " +
                          (!message.empty() ? message : std::string("no message (") + sdk::status_name(status) + ")"),
                      message);
  }
  return instance;
}

}  // namespace prefdiff::instance
