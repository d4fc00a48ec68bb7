#include "clip/openclip.hpp"

#include <ATen/ATen.h>

#include <stdexcept>

#include "prefdiff/model_io/diffusers_folder.hpp"

namespace prefdiff::clip {

namespace fs = std::filesystem;
using model_folder::TensorSource;

namespace {

bool take_prefix(std::string& s, const std::string& prefix) {
  if (s.compare(0, prefix.size(), prefix) != 0) return false;
  s.erase(0, prefix.size());
  return true;
}

// "encoder.layers.<i>.<rest>" of a tower -> "<tower_prefix>transformer.resblocks.<i>.<OpenCLIP rest>".
TensorSource map_layer(std::string rest, const std::string& out_prefix) {
  const size_t dot = rest.find('.');
  const std::string base = out_prefix + "transformer.resblocks." + rest.substr(0, dot) + ".";
  rest.erase(0, dot + 1);
  static const char* kQkv[] = {"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."};
  for (int64_t i = 0; i < 3; ++i) {
    std::string r = rest;
    if (take_prefix(r, kQkv[i])) return TensorSource::row_block(base + "attn.in_proj_" + r, i, 3);  // weight | bias
  }
  static const std::pair<const char*, const char*> kRename[] = {{"self_attn.out_proj.", "attn.out_proj."},
                                                               {"layer_norm1.", "ln_1."},
                                                               {"layer_norm2.", "ln_2."},
                                                               {"mlp.fc1.", "mlp.c_fc."},
                                                               {"mlp.fc2.", "mlp.c_proj."}};
  for (const auto& [ours, theirs] : kRename) {
    std::string r = rest;
    if (take_prefix(r, ours)) return TensorSource::copy(base + theirs + r);
  }
  throw std::logic_error("openclip_key_map: no OpenCLIP name for encoder tensor '" + rest + "'");
}

}  // namespace

model_folder::KeyMap openclip_key_map(const ClipConfig& config) {
  const std::string text = config.openclip_custom_text ? "text." : "";
  model_folder::KeyMap map;
  map.ignored = [text](const std::string& name) { return name == text + "attn_mask"; };
  map.source = [text](const std::string& model_name) -> TensorSource {
    std::string n = model_name;
    if (n == "logit_scale") return TensorSource::copy(n);
    if (n == "text_projection.weight") return TensorSource::transpose(text + "text_projection");
    if (n == "visual_projection.weight") return TensorSource::transpose("visual.proj");
    if (take_prefix(n, "text_model.")) {
      if (n == "embeddings.token_embedding.weight") return TensorSource::copy(text + "token_embedding.weight");
      if (n == "embeddings.position_embedding.weight") return TensorSource::copy(text + "positional_embedding");
      if (take_prefix(n, "final_layer_norm.")) return TensorSource::copy(text + "ln_final." + n);
      if (take_prefix(n, "encoder.layers.")) return map_layer(n, text);
    } else if (take_prefix(n, "vision_model.")) {
      if (n == "embeddings.class_embedding") return TensorSource::copy("visual.class_embedding");
      if (n == "embeddings.patch_embedding.weight") return TensorSource::copy("visual.conv1.weight");
      if (n == "embeddings.position_embedding.weight") return TensorSource::copy("visual.positional_embedding");
      if (take_prefix(n, "pre_layrnorm.")) return TensorSource::copy("visual.ln_pre." + n);
      if (take_prefix(n, "post_layernorm.")) return TensorSource::copy("visual.ln_post." + n);
      if (take_prefix(n, "encoder.layers.")) return map_layer(n, "visual.");
    }
    throw std::logic_error("openclip_key_map: no OpenCLIP name for '" + model_name + "'");
  };
  return map;
}

namespace {

ClipModel build_and_load(const fs::path& config_json, const model_folder::WeightFiles& files,
                         const ClipLoadOptions& options) {
  ClipConfig cfg = ClipConfig::from_openclip_json(model_io::read_json_file(config_json), config_json.string());
  ClipModel model(cfg, at::TensorOptions().device(options.device).dtype(options.dtype));
  model_io::NamedTensors targets;
  for (const auto& item : model->named_parameters(true)) targets.emplace_back(item.key(), item.value());
  model_folder::load_mapped(targets, files, openclip_key_map(cfg), "the OpenCLIP model (" + config_json.string() + ")",
                            "the weights do not belong to this OpenCLIP model config (e.g. ViT-H-14 for HPSv2).");
  model->eval();
  return model;
}

}  // namespace

ClipModel load_openclip_model(const fs::path& config_json, const fs::path& weights, const ClipLoadOptions& options) {
  return build_and_load(config_json, model_folder::WeightFiles::open_file(weights), options);
}

ClipModel load_openclip_model(const fs::path& folder, const ClipLoadOptions& options) {
  const fs::path config_json = folder / "open_clip_config.json";
  if (!fs::is_regular_file(config_json))
    throw model_io::ModelIoError("no OpenCLIP model at '" + folder.string() + "': '" + config_json.string() +
                                 "' does not exist. HINT: pass a folder with open_clip_config.json and "
                                 "open_clip_model.safetensors (tools/convert_openclip_checkpoint.py writes one).");
  return build_and_load(config_json, model_folder::WeightFiles::open_folder(folder, "open_clip_model", options.variant),
                        options);
}

}  // namespace prefdiff::clip
