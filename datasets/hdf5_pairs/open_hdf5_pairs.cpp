// open_hdf5_pairs(): the hdf5-pairs source instantiated in-process through the plugin-instance layer. Its
// own file, so that the plugin library (plugin.cpp) does not pull in the host's side of the ABI.
#include "prefdiff/data/hdf5_pairs_source.hpp"

namespace prefdiff::data {

std::unique_ptr<instance::DataSource> open_hdf5_pairs(const std::string& shards, const pd_host_services* host) {
  const instance::PluginLibrary library = instance::load_builtin(&hdf5_pairs_entry, host);
  instance::ParamSet params = instance::resolve_or_throw(library, {{"shards", instance::Value::string(shards), "", ""}});
  return std::make_unique<instance::DataSource>(library, std::move(params), host);
}

}  // namespace prefdiff::data
