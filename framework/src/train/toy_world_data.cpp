#include "prefdiff/train/toy_world_data.hpp"

#include "prefdiff/host/distributed.hpp"
#include "prefdiff/toy_world/prepare.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff {

ToyWorldData prepare_toy_world_data(const nlohmann::json& data_section, DataParallelGroup& group) {
  const toy::WorldConfig config = toy::WorldConfig::from_json(data_section);
  auto prepare = [&] {
    const toy::PreparedWorld prepared = toy::prepare_world(config);
    return ToyWorldData{prepared.train_shard, prepared.heldout_shard, prepared.reference_model, config.to_json()};
  };
  ToyWorldData data;
  if (group.rank() == 0) data = prepare();
  group.barrier();
  if (group.rank() != 0) data = prepare();  // a cache hit now
  return data;
}

void register_builtin_components(PluginRegistry& registry) {
  // Validation only: the trainer reads the prepared shards through hdf5-pairs, never through this table.
  struct SizeOnlyTable {
    uint32_t struct_size;
  };
  static const SizeOnlyTable table{sizeof(SizeOnlyTable)};
  static const pd_plugin_descriptor descriptor = [] {
    pd_plugin_descriptor d{};
    d.struct_size = sizeof(d);
    d.abi_major = PD_ABI_MAJOR;
    d.abi_minor = PD_ABI_MINOR;
    d.kind = PD_KIND_DATASET;
    d.id = "toy-world";
    d.version = "1.0.0";
    d.summary = "The synthetic preference world: known oracle reward, pretrained tiny reference, pairs from seeds "
                "(docs/toy-world.md)";
    d.citation = "prefdiff docs/toy-world.md";
    d.formula_version = "toy-world/1";
    d.functions = &table;
    return d;
  }();
  LoadedPlugin component;
  component.path = "built-in";
  component.descriptor = &descriptor;
  for (KeySpec key : toy::world_schema()) {
    if (key.name == "id") continue;  // `id` is the host's key in every component table
    // Files named in a recipe are relative to that recipe, as for plugin path parameters.
    if (key.name == "unet_config" || key.name == "cache_dir") key.bounds |= PD_PARAM_PATH;
    component.params.push_back(std::move(key));
  }
  registry.add_builtin(std::move(component));
}

}  // namespace prefdiff
