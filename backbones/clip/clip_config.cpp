// transformers / OpenCLIP config.json -> CLIP structs. Problems are collected and reported together.
#include "clip/clip_config.hpp"

namespace prefdiff::clip {

namespace {

using model_folder::ConfigReader;
using json = nlohmann::json;

Activation read_activation(ConfigReader& r, const std::string& key, const std::string& fallback) {
  return r.choice(key, fallback, {"quick_gelu", "gelu"}) == "gelu" ? Activation::kGelu : Activation::kQuickGelu;
}

void read_tower(ConfigReader& r, ClipTowerConfig& c) {
  c.hidden_size = r.integer("hidden_size", 1);
  c.intermediate_size = r.integer("intermediate_size", 1);
  c.num_hidden_layers = r.integer("num_hidden_layers", 1);
  c.num_attention_heads = r.integer("num_attention_heads", 1);
  c.hidden_act = read_activation(r, "hidden_act", "quick_gelu");
  c.layer_norm_eps = r.number_or("layer_norm_eps", 1e-5);
  c.projection_dim = r.integer_or("projection_dim", 512, 1);
  if (c.num_attention_heads > 0 && c.hidden_size % c.num_attention_heads != 0)
    r.problem("hidden_size", "(" + std::to_string(c.hidden_size) + ") is not a multiple of num_attention_heads (" +
                                 std::to_string(c.num_attention_heads) + ")");
}

// int or [n, n] (transformers accepts both for image_size / patch_size; CLIP is square).
int64_t square_size(ConfigReader& r, const std::string& key) {
  const json* v = r.find(key);
  if (v && v->is_array()) {
    if (v->size() == 2 && (*v)[0].is_number_integer() && (*v)[0] == (*v)[1] && (*v)[0].get<int64_t>() > 0)
      return (*v)[0].get<int64_t>();
    r.problem(key, "must be a positive integer or a square [n, n], got " + v->dump());
    return 1;
  }
  return r.integer(key, 1);
}

const char* kHint = "prefdiff reads transformers' CLIPTextModel(WithProjection), CLIPVisionModel(WithProjection) and "
                    "CLIPModel configs; see docs/backbones.md, section \"CLIP\".";

}  // namespace

ClipTextConfig ClipTextConfig::read(ConfigReader& r) {
  ClipTextConfig c;
  read_tower(r, c);
  c.vocab_size = r.integer("vocab_size", 1);
  c.max_position_embeddings = r.integer("max_position_embeddings", 1);
  c.eos_token_id = r.integer_or("eos_token_id", 49407, 0);  // transformers 5's default
  c.pool_at_argmax = c.eos_token_id == 2;
  return c;
}

ClipTextConfig ClipTextConfig::from_json(const json& j, const std::string& origin) {
  ConfigReader r(j, origin);
  if (r.has("text_config"))
    r.problem("text_config", "is present: this is a CLIPModel config (both towers); load it with clip::load_clip_model");
  ClipTextConfig c = read(r);
  r.finish("the CLIP text encoder config", kHint);
  return c;
}

ClipVisionConfig ClipVisionConfig::read(ConfigReader& r) {
  ClipVisionConfig c;
  read_tower(r, c);
  c.num_channels = r.integer_or("num_channels", 3, 1);
  c.image_size = square_size(r, "image_size");
  c.patch_size = square_size(r, "patch_size");
  if (c.patch_size > 0 && c.image_size % c.patch_size != 0)
    r.problem("image_size", "(" + std::to_string(c.image_size) + ") is not a multiple of patch_size (" +
                                std::to_string(c.patch_size) + ")");
  return c;
}

ClipVisionConfig ClipVisionConfig::from_json(const json& j, const std::string& origin) {
  ConfigReader r(j, origin);
  if (r.has("vision_config"))
    r.problem("vision_config", "is present: this is a CLIPModel config (both towers); load it with clip::load_clip_model");
  ClipVisionConfig c = read(r);
  r.finish("the CLIP vision encoder config", kHint);
  return c;
}

ClipConfig ClipConfig::from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) throw ConfigError(origin + ": the CLIPModel config must be a JSON object");
  ClipConfig c;
  // Legacy *_config_dict entries win over *_config for the keys they set.
  auto merged = [&](const char* key) {
    json base = j.contains(key) && j[key].is_object() ? j[key] : json::object();
    const std::string legacy = std::string(key) + "_dict";
    if (j.contains(legacy) && j[legacy].is_object())
      for (auto it = j[legacy].begin(); it != j[legacy].end(); ++it) base[it.key()] = it.value();
    return base;
  };
  json top = j;
  top["text_config"] = merged("text_config");
  top["vision_config"] = merged("vision_config");
  ConfigReader r(top, origin);
  ConfigReader text = r.nested("text_config");
  ConfigReader vision = r.nested("vision_config");
  c.text = ClipTextConfig::read(text);
  c.vision = ClipVisionConfig::read(vision);
  c.projection_dim = r.integer_or("projection_dim", 512, 1);
  c.logit_scale_init_value = r.number_or("logit_scale_init_value", 2.6592);
  r.finish("the CLIPModel config", kHint);
  return c;
}

ClipConfig ClipConfig::from_openclip_json(const json& j, const std::string& origin) {
  const json& cfg = j.is_object() && j.contains("model_cfg") ? j["model_cfg"] : j;
  ConfigReader r(cfg, origin, j.is_object() && j.contains("model_cfg") ? "model_cfg." : "");
  ClipConfig c;
  c.projection_dim = r.integer("embed_dim", 1);
  c.text.projection_dim = c.vision.projection_dim = c.projection_dim;
  const Activation act = r.boolean_or("quick_gelu", false) ? Activation::kQuickGelu : Activation::kGelu;
  c.openclip_custom_text = r.boolean_or("custom_text", false);
  // Settings that change the network in ways these modules do not implement.
  auto refuse_set = [](ConfigReader& t, const std::string& key, const std::string& what) {
    if (const json* v = t.find(key); v && *v != false && *v != json::object())
      t.problem(key, "is " + v->dump() + ": " + what + " is not supported");
  };
  for (const char* key : {"multimodal_cfg", "init_logit_bias"}) refuse_set(r, key, "this model family (CoCa/SigLIP)");

  ConfigReader v = r.nested("vision_cfg");
  if (const json* layers = v.find("layers"); layers && layers->is_array())
    v.problem("layers", "is " + layers->dump() + ": ResNet vision towers are not supported (ViT only)");
  else
    c.vision.num_hidden_layers = v.integer("layers", 1);
  c.vision.hidden_size = v.integer("width", 1);
  const int64_t head_width = v.integer_or("head_width", 64, 1);
  c.vision.num_attention_heads = c.vision.hidden_size / head_width;
  if (c.vision.hidden_size % head_width != 0) v.problem("width", "is not a multiple of head_width");
  c.vision.intermediate_size = static_cast<int64_t>(c.vision.hidden_size * v.number_or("mlp_ratio", 4.0));
  c.vision.image_size = square_size(v, "image_size");
  c.vision.patch_size = square_size(v, "patch_size");
  c.vision.hidden_act = act;
  c.vision.layer_norm_eps = 1e-5;
  for (const char* key : {"timm_model_name", "ls_init_value", "attentional_pool", "no_ln_pre", "final_ln_after_pool",
                          "act_kwargs", "norm_kwargs"})
    refuse_set(v, key, "this vision tower option");
  if (v.string_or("pool_type", "tok") != "tok") v.problem("pool_type", "must be \"tok\" (class-token pooling)");
  if (v.string_or("pos_embed_type", "learnable") != "learnable")
    v.problem("pos_embed_type", "must be \"learnable\"");

  ConfigReader t = r.nested("text_cfg");
  c.text.max_position_embeddings = t.integer_or("context_length", 77, 1);
  c.text.vocab_size = t.integer_or("vocab_size", 49408, 1);
  c.text.hidden_size = t.integer_or("width", 512, 1);
  c.text.num_attention_heads = t.integer_or("heads", 8, 1);
  c.text.num_hidden_layers = t.integer_or("layers", 12, 1);
  c.text.intermediate_size = static_cast<int64_t>(c.text.hidden_size * t.number_or("mlp_ratio", 4.0));
  c.text.hidden_act = act;
  c.text.layer_norm_eps = 1e-5;
  const std::string pool = t.choice("pool_type", "argmax", {"argmax", "eos"});
  c.text.pool_at_argmax = pool == "argmax";  // OpenCLIP's default: the end-of-text token has the largest id
  c.text.eos_token_id = t.integer_or("eos_id", 2, 0);
  if (c.text.hidden_size % c.text.num_attention_heads != 0) t.problem("width", "is not a multiple of heads");
  for (const char* key : {"hf_model_name", "ls_init_value", "embed_cls", "no_causal_mask", "final_ln_after_pool",
                          "proj_bias", "act_kwargs", "norm_kwargs"})
    refuse_set(t, key, "this text tower option");
  for (ConfigReader* tower : {&v, &t}) {
    for (const char* key : {"qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner", "scale_attn", "scale_fc"})
      refuse_set(*tower, key, "this attention variant");
    if (tower->string_or("block_type", "default") != "default")
      tower->problem("block_type", "must be \"default\" (the plain residual attention block)");
  }
  if (t.string_or("proj_type", "linear") != "linear") t.problem("proj_type", "must be \"linear\"");
  r.finish("the OpenCLIP model config",
           "prefdiff reads OpenCLIP ViT models with a transformer text tower (e.g. ViT-H-14, as HPSv2 uses); "
           "see docs/backbones.md, section \"OpenCLIP\".");
  return c;
}

}  // namespace prefdiff::clip
