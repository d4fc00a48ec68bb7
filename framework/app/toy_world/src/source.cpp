// The synthetic world behind the tier-1 dataset interface (see source.hpp).
#include "prefdiff/toy_world/source.hpp"

#include <filesystem>
#include <memory>

#include "prefdiff/data/shard_set.hpp"
#include "prefdiff/dataset_sdk.hpp"
#include "prefdiff/toy_world/prepare.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy {
namespace {

// The world's [data] keys as the descriptor's schema (the table that validates recipes, docs and this).
sdk::ParamSpec descriptor_param(const ParamSpec& key) {
  using instance::Value;
  const Value& d = *key.default_value;
  sdk::ParamSpec spec = key.type == ValueType::Int    ? sdk::ParamSpec::integer(key.name, d.integer, key.doc)
                        : key.type == ValueType::Bool ? sdk::ParamSpec::boolean(key.name, d.boolean, key.doc)
                        : key.type == ValueType::String ? sdk::ParamSpec::string(key.name, d.text, key.doc)
                                                        : sdk::ParamSpec::real(key.name, d.number, key.doc);
  if (key.bounds & PD_PARAM_HAS_MIN) spec.min(key.min, (key.bounds & PD_PARAM_MIN_EXCLUSIVE) != 0);
  if (key.bounds & PD_PARAM_HAS_MAX) spec.max(key.max, (key.bounds & PD_PARAM_MAX_EXCLUSIVE) != 0);
  if (key.is_path()) spec.path();
  if (!key.choices.empty()) {
    std::string choices;
    for (const std::string& c : key.choices) choices += (choices.empty() ? "" : "|") + c;
    spec.choices(choices);
  }
  if (!key.range_note.empty()) spec.range_note(key.range_note);
  return spec;
}

class WorldSource final : public sdk::DatasetSource {
 public:
  static sdk::PluginInfo info() {
    sdk::PluginInfo info;
    info.id = kDataId;
    info.version = "1.0.0";
    info.summary = "The synthetic preference world: known oracle reward, pretrained tiny reference, pairs from seeds "
                   "(docs/toy-world.md)";
    info.citation = "prefdiff docs/toy-world.md";
    info.formula_version = "toy-world/1";
    for (const ParamSpec& key : world_schema())
      if (key.name != "id") info.params.push_back(descriptor_param(key));  // `id` is the host's key
    return info;
  }

  WorldSource(const sdk::Params& params, const sdk::Host&) {
    nlohmann::json section = {{"id", kDataId}};
    for (const ParamSpec& key : world_schema()) {
      if (key.name == "id") continue;
      if (key.type == ValueType::Int) section[key.name] = params.integer(key.name);
      else if (key.type == ValueType::Float) section[key.name] = params.number(key.name);
      else if (key.type == ValueType::Bool) section[key.name] = params.boolean(key.name);
      else section[key.name] = params.string(key.name);
    }
    try {
      config_ = WorldConfig::from_json(section);
      prepared_ = prepare_world(config_);
      shards_ = std::make_unique<data::ShardSet>(std::vector<std::string>{prepared_.train_shard.string()});
    } catch (const std::exception& e) {
      throw sdk::Error(PD_ERR_IO, e.what());
    }
  }

  sdk::DatasetInfo describe() override {
    sdk::DatasetInfo info = shards_->info();
    info.attributes.emplace_back("reference_model", prepared_.reference_model.string());
    info.attributes.emplace_back("heldout_shards", prepared_.heldout_shard.string());
    info.attributes.emplace_back("world", config_.to_json().dump());
    return info;
  }

  void read(const sdk::ReadRequest& request) override {
    try {
      shards_->read(request);
    } catch (const std::exception& e) {
      throw sdk::Error(PD_ERR_IO, e.what());
    }
  }

 private:
  WorldConfig config_;
  PreparedWorld prepared_;
  std::unique_ptr<data::ShardSet> shards_;
};

}  // namespace

pd_status source_entry(uint32_t host_abi_major, uint32_t host_abi_minor, const pd_host_services* host,
                       const pd_plugin_descriptor** descriptor, pd_error* error) {
  return sdk::detail::DatasetExport<WorldSource>::entry(host_abi_major, host_abi_minor, host, descriptor, error);
}

void register_source(PluginRegistry& registry) {
  BuiltinTraits traits;
  traits.supplies_model = true;
  traits.check_paths = [](const instance::ParamSet& params) {
    std::vector<std::string> problems;
    const instance::Value* config = params.find("unet_config");
    std::error_code ec;
    if (config != nullptr && !config->text.empty() && !std::filesystem::is_regular_file(config->text, ec))
      problems.push_back("key 'unet_config': \"" + config->text + "\" does not exist. HINT: name a UNet config.json, or "
                         "leave it empty for the built-in tiny UNet");
    return problems;  // cache_dir is created when missing
  };
  registry.add_builtin(&source_entry, std::move(traits));
}

}  // namespace prefdiff::toy
