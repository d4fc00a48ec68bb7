// The host's side of the tier-1 dataset ABI: one created dataset-source instance, with its description
// in C++ types and read() turning status codes into exceptions naming the source. Works the same for a
// plugin loaded from a file and for a source built into the host (hdf5-pairs in-process, the synthetic
// world).
#ifndef PREFDIFF_INSTANCE_DATA_SOURCE_HPP
#define PREFDIFF_INSTANCE_DATA_SOURCE_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/dataset.h"
#include "prefdiff/dataset_sdk.hpp"
#include "prefdiff/instance/default_services.hpp"
#include "prefdiff/instance/library.hpp"
#include "prefdiff/instance/params.hpp"

namespace prefdiff::instance {

class DataSource {
 public:
  // One output of a read: `capacity` bytes at `data` for rows of tensor `name`.
  struct Output {
    std::string name;
    void* data;
    size_t capacity;
  };

  // Creates an instance of a dataset plugin and reads its description. Throws PluginError with the
  // plugin's message when create() or describe() fails.
  DataSource(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host = default_host_services());
  ~DataSource();
  DataSource(const DataSource&) = delete;
  DataSource& operator=(const DataSource&) = delete;

  const std::string& id() const { return id_; }
  uint64_t pair_count() const { return pair_count_; }
  const std::vector<prefdiff::sdk::TensorSpec>& tensors() const { return tensors_; }
  const prefdiff::sdk::TensorSpec* find(const std::string& name) const;
  const std::vector<std::pair<std::string, std::string>>& attributes() const { return attributes_; }
  std::string attribute(const std::string& name) const;  // "" when absent
  // "hdf5-pairs (data/train-0.h5 and 3 more)": how errors name the data set.
  std::string label() const;

  void read(const uint64_t* indices, size_t count, const uint8_t* empty_prompt, const std::vector<Output>& outputs);

  const PluginLibrary& plugin() const { return plugin_; }
  const ParamSet& params() const { return params_; }

 private:
  PluginLibrary plugin_;
  ParamSet params_;
  std::string plugin_label_;
  std::string id_;
  const pd_dataset_functions* functions_ = nullptr;
  pd_instance* instance_ = nullptr;
  uint64_t pair_count_ = 0;
  std::vector<prefdiff::sdk::TensorSpec> tensors_;
  std::vector<std::pair<std::string, std::string>> attributes_;
};

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_DATA_SOURCE_HPP
