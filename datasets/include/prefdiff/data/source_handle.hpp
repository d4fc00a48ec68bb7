// The host's side of the tier-1 dataset ABI: one created dataset-source instance, with its description
// in C++ types and read() turning status codes into exceptions. Works the same for a plugin loaded from a
// file and for the built-in hdf5-pairs source.
#ifndef PREFDIFF_DATA_SOURCE_HANDLE_HPP
#define PREFDIFF_DATA_SOURCE_HANDLE_HPP

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/dataset.h"
#include "prefdiff/dataset_sdk.hpp"

namespace prefdiff::data {

class SourceHandle {
 public:
  // One output of a read: `capacity` bytes at `data` for rows of tensor `name`.
  struct Output {
    std::string name;
    void* data;
    size_t capacity;
  };

  // Creates an instance of a dataset plugin. `descriptor` comes from its entry point; `params` are
  // already checked against its schema. Throws std::runtime_error with the plugin's message.
  SourceHandle(const pd_plugin_descriptor* descriptor, const pd_host_services* host, const std::vector<pd_param_value>& params);
  ~SourceHandle();
  SourceHandle(const SourceHandle&) = delete;
  SourceHandle& operator=(const SourceHandle&) = delete;

  const std::string& id() const { return id_; }
  uint64_t pair_count() const { return pair_count_; }
  const std::vector<prefdiff::sdk::TensorSpec>& tensors() const { return tensors_; }
  const prefdiff::sdk::TensorSpec* find(const std::string& name) const;
  const std::vector<std::pair<std::string, std::string>>& attributes() const { return attributes_; }
  std::string attribute(const std::string& name) const;  // "" when absent
  // "hdf5-pairs (data/train-0.h5 and 3 more)": how errors name the data set.
  std::string label() const;

  void read(const uint64_t* indices, size_t count, const uint8_t* empty_prompt, const std::vector<Output>& outputs);

 private:
  std::string id_;
  const pd_dataset_functions* functions_ = nullptr;
  pd_instance* instance_ = nullptr;
  uint64_t pair_count_ = 0;
  std::vector<prefdiff::sdk::TensorSpec> tensors_;
  std::vector<std::pair<std::string, std::string>> attributes_;
};

// The built-in hdf5-pairs source (linked in, no plugin file) over a shard file or glob.
std::unique_ptr<SourceHandle> open_hdf5_pairs(const std::string& shards, const pd_host_services* host = nullptr);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_SOURCE_HANDLE_HPP
