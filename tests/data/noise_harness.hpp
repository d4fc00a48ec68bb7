// A noise-injector instance from its plugin library, plus a host whose metric service records values.
#ifndef PREFDIFF_TESTS_DATA_NOISE_HARNESS_HPP
#define PREFDIFF_TESTS_DATA_NOISE_HARNESS_HPP

#include <map>
#include <string>
#include <vector>

#include "plugin_library.hpp"
#include "prefdiff/noise.h"

namespace prefdiff::test {

struct RecordingHost {
  std::map<std::string, double> metrics;  // last value per "plugin/name"
  pd_host_services services{};
  RecordingHost() {
    services.struct_size = sizeof services;
    services.context = this;
    services.metric = [](void* context, const char* plugin, const char* name, double value) {
      static_cast<RecordingHost*>(context)->metrics[std::string(plugin) + "/" + name] = value;
    };
    services.rank = 0;
    services.world_size = 1;
  }
};

class NoiseInstance {
 public:
  NoiseInstance(const std::string& file, ParamList params, const pd_host_services* host = nullptr) : library_(file, host) {
    functions_ = library_.functions<pd_noise_functions>();
    std::vector<pd_param_value> values = params.values(library_.descriptor());
    prefdiff::sdk::ErrorBuffer error;
    status_ = functions_->create(host, values.data(), static_cast<uint32_t>(values.size()), &instance_, error.get());
    message_ = error.message();
  }
  ~NoiseInstance() {
    if (instance_ != nullptr) functions_->destroy(instance_);
  }
  pd_status create_status() const { return status_; }
  const std::string& message() const { return message_; }
  const pd_noise_functions* functions() const { return functions_; }
  pd_instance* instance() const { return instance_; }

  // Decides flips for `ids`; metadata columns by name. Returns the status; the message in message().
  pd_status decide(const std::vector<uint64_t>& ids, std::vector<uint8_t>& flips, uint64_t dataset_size,
                   const std::map<std::string, std::vector<double>>& metadata = {}) {
    std::vector<const char*> names;
    std::vector<const double*> columns;
    for (const auto& m : metadata) {
      names.push_back(m.first.c_str());
      columns.push_back(m.second.data());
    }
    pd_noise_inputs in{};
    in.struct_size = sizeof in;
    in.metadata_count = static_cast<uint32_t>(names.size());
    in.count = ids.size();
    in.pair_ids = ids.data();
    in.metadata_names = names.data();
    in.metadata = columns.data();
    in.dataset_size = dataset_size;
    flips.assign(ids.size(), 7);
    pd_noise_outputs out{};
    out.struct_size = sizeof out;
    out.flip = flips.data();
    prefdiff::sdk::ErrorBuffer error;
    const pd_status status = functions_->decide(instance_, &in, &out, error.get());
    message_ = error.message();
    return status;
  }

 private:
  PluginLibrary library_;
  const pd_noise_functions* functions_ = nullptr;
  pd_instance* instance_ = nullptr;
  pd_status status_ = PD_OK;
  std::string message_;
};

}  // namespace prefdiff::test

#endif  // PREFDIFF_TESTS_DATA_NOISE_HARNESS_HPP
