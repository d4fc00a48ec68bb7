// `hdf5-pairs`: the dataset source over pair shards, a tier-1 PD_KIND_DATASET plugin. The same class is
// built as the plugin library (hdf5_pairs/plugin.cpp) and linked into prefdiff_datasets, where
// hdf5_pairs_entry() serves hosts and tools that do not load it from a file.
#ifndef PREFDIFF_DATA_HDF5_PAIRS_SOURCE_HPP
#define PREFDIFF_DATA_HDF5_PAIRS_SOURCE_HPP

#include <memory>

#include "prefdiff/data/shard_set.hpp"
#include "prefdiff/dataset_sdk.hpp"
#include "prefdiff/instance/data_source.hpp"

namespace prefdiff::data {

class Hdf5PairsSource final : public prefdiff::sdk::DatasetSource {
 public:
  static prefdiff::sdk::PluginInfo info();
  Hdf5PairsSource(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host);
  prefdiff::sdk::DatasetInfo describe() override;
  void read(const prefdiff::sdk::ReadRequest& request) override;

 private:
  std::unique_ptr<ShardSet> shards_;
};

// The plugin's entry point, callable in-process (same contract as prefdiff_plugin_entry).
pd_status hdf5_pairs_entry(uint32_t host_abi_major, uint32_t host_abi_minor, const pd_host_services* host,
                           const pd_plugin_descriptor** descriptor, pd_error* error);

// The hdf5-pairs source linked into the host (no plugin file) over a shard file or glob.
std::unique_ptr<instance::DataSource> open_hdf5_pairs(const std::string& shards, const pd_host_services* host = nullptr);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_HDF5_PAIRS_SOURCE_HPP
