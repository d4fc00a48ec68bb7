// The synthetic preference world as the trainer's data source ([data] id = "toy-world"): prepared
// (and cached) once, then read through the ordinary pair-shard path like real data.
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

#include "prefdiff/host/plugin_registry.hpp"

namespace prefdiff {

class DataParallelGroup;

struct ToyWorldData {
  std::filesystem::path train_shards;     // training pairs (labels as the oracle gave them)
  std::filesystem::path held_out_shards;  // clean held-out pairs for validation
  std::filesystem::path reference_model;  // the pretrained tiny UNet (diffusers folder)
  nlohmann::json world;                   // the resolved world configuration
};

// Rank 0 prepares (or finds in the cache) the world first; the others then find it cached.
ToyWorldData prepare_toy_world_data(const nlohmann::json& data_section, DataParallelGroup& group);

// Registers the built-in "toy-world" dataset (its schema validates [data] tables like a plugin's).
void register_builtin_components(PluginRegistry& registry);

}  // namespace prefdiff
