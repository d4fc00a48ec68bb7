// One noise-injector plugin instance (create ... destroy) and its decide() call (noise.h).
#ifndef PREFDIFF_INSTANCE_NOISE_INSTANCE_HPP
#define PREFDIFF_INSTANCE_NOISE_INSTANCE_HPP

#include <cstdint>
#include <string>
#include <vector>

#include "prefdiff/instance/default_services.hpp"
#include "prefdiff/instance/library.hpp"
#include "prefdiff/instance/params.hpp"
#include "prefdiff/noise.h"

namespace prefdiff::instance {

// Pairs to decide on: stable ids and named per-pair metadata columns (names without the "meta/" prefix).
struct NoiseBatch {
  std::vector<uint64_t> pair_ids;
  std::vector<std::string> metadata_names;
  std::vector<std::vector<double>> metadata;  // one column of pair_ids.size() values per name
  uint64_t dataset_size = 0;                  // 0 = pair_ids.size()
};

class NoiseInstance {
 public:
  // Throws PluginError ("noise-injector 'x' refused its parameters: ...") when create() fails.
  NoiseInstance(const PluginLibrary& plugin, ParamSet params, const pd_host_services* host = default_host_services());
  ~NoiseInstance();
  NoiseInstance(const NoiseInstance&) = delete;
  NoiseInstance& operator=(const NoiseInstance&) = delete;

  // One flag per pair (1 = swap winner and loser). Throws PluginError naming the plugin when decide()
  // fails (`where` names the data set in that message).
  std::vector<uint8_t> decide(const NoiseBatch& batch, const std::string& where);

  const PluginLibrary& plugin() const { return plugin_; }
  const ParamSet& params() const { return params_; }

 private:
  PluginLibrary plugin_;
  ParamSet params_;
  std::string label_;
  const pd_noise_functions* functions_ = nullptr;
  pd_instance* instance_ = nullptr;
};

}  // namespace prefdiff::instance

#endif  // PREFDIFF_INSTANCE_NOISE_INSTANCE_HPP
