#include "prefdiff/data/hdf5_pairs_source.hpp"

#include <string>
#include <vector>

namespace prefdiff::data {

namespace {
std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}
}  // namespace

prefdiff::sdk::PluginInfo Hdf5PairsSource::info() {
  using prefdiff::sdk::ParamSpec;
  prefdiff::sdk::PluginInfo info;
  info.id = "hdf5-pairs";
  info.version = "1.0.0";
  info.summary = "Preference pairs from prefdiff HDF5 pair shards (precomputed latents and text embeddings).";
  info.citation = "prefdiff docs/data-format.md, shard format version 1";
  info.formula_version = "1";
  info.params.push_back(ParamSpec::string("shards", "", "Shard file or glob; list several with braces, e.g. "
                                                        "\"data/{train,extra}-*.h5\". Relative to the recipe file.")
                            .path());
  return info;
}

Hdf5PairsSource::Hdf5PairsSource(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host) {
  const std::string shards = params.has("shards") ? params.string("shards") : std::string();
  const std::string pattern = trim(shards);
  if (pattern.empty())
    throw prefdiff::sdk::Error(PD_ERR_INVALID_ARGUMENT, "hdf5-pairs: parameter 'shards' is empty. HINT: set data.shards to "
                                                        "a shard file or glob, e.g. \"data/train-*.h5\"");
  try {
    shards_ = std::make_unique<ShardSet>(std::vector<std::string>{pattern});
  } catch (const ShardError& e) {
    throw prefdiff::sdk::Error(PD_ERR_IO, e.what());
  }
  host.log(PD_LOG_INFO, "opened " + std::to_string(shards_->shard_count()) + " shards, " +
                            std::to_string(shards_->info().pair_count) + " pairs");
}

prefdiff::sdk::DatasetInfo Hdf5PairsSource::describe() { return shards_->info(); }

void Hdf5PairsSource::read(const prefdiff::sdk::ReadRequest& request) {
  try {
    shards_->read(request);
  } catch (const ShardError& e) {
    throw prefdiff::sdk::Error(PD_ERR_IO, e.what());
  }
}

pd_status hdf5_pairs_entry(uint32_t host_abi_major, uint32_t host_abi_minor, const pd_host_services* host,
                           const pd_plugin_descriptor** descriptor, pd_error* error) {
  return prefdiff::sdk::detail::DatasetExport<Hdf5PairsSource>::entry(host_abi_major, host_abi_minor, host, descriptor, error);
}

}  // namespace prefdiff::data
