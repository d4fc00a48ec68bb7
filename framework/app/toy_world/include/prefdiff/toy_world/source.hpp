// The synthetic world as a pair source ([data] id = "toy-world"), built into the host through the same
// tier-1 dataset interface as `hdf5-pairs`: creating it prepares the world (or finds it in the cache),
// then it serves the training pairs from the world's shard. Its attributes tell the trainer where the
// rest is: `reference_model` (the pretrained UNet the pairs were made for: training starts from it),
// `heldout_shards` (clean held-out pairs for validation) and `world` (the resolved [data] table as JSON).
#ifndef PREFDIFF_TOY_WORLD_SOURCE_HPP
#define PREFDIFF_TOY_WORLD_SOURCE_HPP

#include "prefdiff/abi.h"
#include "prefdiff/host/plugin_registry.hpp"

namespace prefdiff::toy {

// The source's entry point, called in-process (same contract as prefdiff_plugin_entry).
pd_status source_entry(uint32_t host_abi_major, uint32_t host_abi_minor, const pd_host_services* host,
                       const pd_plugin_descriptor** descriptor, pd_error* error);

// Adds the source to `registry` as a built-in component, with what the host needs to know before
// creating it: it supplies the model, and which of its paths must exist (unet_config; the cache is made).
void register_source(PluginRegistry& registry);

}  // namespace prefdiff::toy

#endif  // PREFDIFF_TOY_WORLD_SOURCE_HPP
