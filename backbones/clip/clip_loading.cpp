#include "clip/clip_loading.hpp"

#include <ATen/ATen.h>

#include "model_folder/mapped_load.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"

namespace prefdiff::clip {

namespace fs = std::filesystem;
using model_folder::KeyMap;
using model_folder::TensorSource;
using model_folder::WeightFiles;

namespace {

const char* kHint = "the weights do not belong to this config.json (wrong folder, variant or model class?).";

at::TensorOptions tensor_options(const ClipLoadOptions& o) { return at::TensorOptions().device(o.device).dtype(o.dtype); }

model_io::NamedTensors named_tensors(torch::nn::Module& m) {
  model_io::NamedTensors out;
  for (const auto& item : m.named_parameters(true)) out.emplace_back(item.key(), item.value());
  return out;
}

// transformers < 4.31 saved position_ids as a persistent buffer; transformers skips it on load.
bool is_position_ids(const std::string& name) {
  const std::string tail = "embeddings.position_ids";
  return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
}

// Maps "<tower>.x" to "x" when the file was saved without the tower prefix (transformers 5 CLIPTextModel /
// CLIPVisionModel save their own submodules at the top level).
KeyMap tower_key_map(const WeightFiles& files, const std::string& tower) {
  KeyMap map;
  map.ignored = is_position_ids;
  if (!files.any_name_starts_with(tower + "."))
    map.source = [tower](const std::string& name) {
      return TensorSource::copy(name.compare(0, tower.size() + 1, tower + ".") == 0 ? name.substr(tower.size() + 1) : name);
    };
  return map;
}

// The config's "architectures" entry decides; else whether the weights have the projection.
bool decide_projection(std::optional<bool> forced, const nlohmann::json& config, const char* plain,
                       const char* projected, const WeightFiles& files, const char* tensor) {
  if (forced) return *forced;
  if (config.contains("architectures") && config["architectures"].is_array())
    for (const auto& a : config["architectures"]) {
      if (a == projected) return true;
      if (a == plain) return false;
    }
  return files.contains(tensor);
}

}  // namespace

ClipTextModel load_clip_text_model(const fs::path& folder, const ClipLoadOptions& options, const std::string& subfolder,
                                   std::optional<bool> with_projection) {
  const fs::path dir = model_io::resolve_model_dir(folder, subfolder);
  const fs::path config_path = dir / "config.json";
  const nlohmann::json j = model_io::read_json_file(config_path);
  ClipTextConfig cfg = ClipTextConfig::from_json(j, config_path.string());
  const WeightFiles files = WeightFiles::open_folder(dir, "model", options.variant);
  const bool proj = decide_projection(with_projection, j, "CLIPTextModel", "CLIPTextModelWithProjection", files,
                                      "text_projection.weight");
  ClipTextModel model(cfg, proj, tensor_options(options));
  model_folder::load_mapped(named_tensors(*model), files, tower_key_map(files, "text_model"),
                            std::string(proj ? "CLIPTextModelWithProjection" : "CLIPTextModel") + " (" +
                                config_path.string() + ")",
                            kHint);
  model->eval();
  return model;
}

ClipVisionModel load_clip_vision_model(const fs::path& folder, const ClipLoadOptions& options,
                                       std::optional<bool> with_projection) {
  const fs::path dir = model_io::resolve_model_dir(folder, "image_encoder");
  const fs::path config_path = dir / "config.json";
  const nlohmann::json j = model_io::read_json_file(config_path);
  ClipVisionConfig cfg = ClipVisionConfig::from_json(j, config_path.string());
  const WeightFiles files = WeightFiles::open_folder(dir, "model", options.variant);
  const bool proj = decide_projection(with_projection, j, "CLIPVisionModel", "CLIPVisionModelWithProjection", files,
                                      "visual_projection.weight");
  ClipVisionModel model(cfg, proj, tensor_options(options));
  model_folder::load_mapped(named_tensors(*model), files, tower_key_map(files, "vision_model"),
                            std::string(proj ? "CLIPVisionModelWithProjection" : "CLIPVisionModel") + " (" +
                                config_path.string() + ")",
                            kHint);
  model->eval();
  return model;
}

ClipModel load_clip_model(const fs::path& folder, const ClipLoadOptions& options) {
  const fs::path dir = model_io::resolve_model_dir(folder, "");
  const fs::path config_path = dir / "config.json";
  ClipConfig cfg = ClipConfig::from_json(model_io::read_json_file(config_path), config_path.string());
  const WeightFiles files = WeightFiles::open_folder(dir, "model", options.variant);
  ClipModel model(cfg, tensor_options(options));
  KeyMap map;
  map.ignored = is_position_ids;
  model_folder::load_mapped(named_tensors(*model), files, map, "CLIPModel (" + config_path.string() + ")", kHint);
  model->eval();
  return model;
}

}  // namespace prefdiff::clip
