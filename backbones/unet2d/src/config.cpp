// config.json -> Unet2dConfig, following diffusers' UNet2DConditionModel.__init__ defaults and the
// used/ignored/refused policy of the spec. Problems are collected and reported together.
#include "prefdiff/unet2d/config.hpp"

#include "prefdiff/instance/did_you_mean.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

namespace prefdiff::unet2d {

namespace {

using json = nlohmann::json;

// Upper bounds far above every published UNet2DConditionModel (SDXL: 1280 channels, 10 transformer layers,
// 2048-wide text context): a config beyond them is a typo or a hostile file, refused before anything is
// allocated instead of failing deep inside the allocator.
constexpr int64_t kMaxChannels = 16384;
constexpr int64_t kMaxLayers = 100;
constexpr int64_t kMaxKernel = 15;
constexpr int64_t kMaxEmbeddingDim = 65536;
constexpr double kMaxParameters = 2e10;  // 80 GB of float32 weights, about 8 times SDXL's UNet

// Every key of UNet2DConditionModel.__init__ with its default (spec section 6).
const json& defaults() {
  static const json d = {
      {"sample_size", nullptr},
      {"in_channels", 4},
      {"out_channels", 4},
      {"center_input_sample", false},
      {"flip_sin_to_cos", true},
      {"freq_shift", 0},
      {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
      {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
      {"only_cross_attention", false},
      {"block_out_channels", {320, 640, 1280, 1280}},
      {"layers_per_block", 2},
      {"downsample_padding", 1},
      {"mid_block_scale_factor", 1},
      {"dropout", 0.0},
      {"act_fn", "silu"},
      {"norm_num_groups", 32},
      {"norm_eps", 1e-5},
      {"cross_attention_dim", 1280},
      {"transformer_layers_per_block", 1},
      {"reverse_transformer_layers_per_block", nullptr},
      {"encoder_hid_dim", nullptr},
      {"encoder_hid_dim_type", nullptr},
      {"attention_head_dim", 8},
      {"num_attention_heads", nullptr},
      {"dual_cross_attention", false},
      {"use_linear_projection", false},
      {"class_embed_type", nullptr},
      {"addition_embed_type", nullptr},
      {"addition_time_embed_dim", nullptr},
      {"num_class_embeds", nullptr},
      {"upcast_attention", false},
      {"resnet_time_scale_shift", "default"},
      {"resnet_skip_time_act", false},
      {"resnet_out_scale_factor", 1.0},
      {"time_embedding_type", "positional"},
      {"time_embedding_dim", nullptr},
      {"time_embedding_act_fn", nullptr},
      {"timestep_post_act", nullptr},
      {"time_cond_proj_dim", nullptr},
      {"conv_in_kernel", 3},
      {"conv_out_kernel", 3},
      {"projection_class_embeddings_input_dim", nullptr},
      {"attention_type", "default"},
      {"class_embeddings_concat", false},
      {"mid_block_only_cross_attention", nullptr},
      {"cross_attention_norm", nullptr},
      {"addition_embed_type_num_heads", 64},
  };
  return d;
}

class Reader {
 public:
  Reader(const json& j, std::vector<std::string>* problems) : j_(j), problems_(problems) {}

  // The value of `key`, or its default when absent or null.
  const json& get(const std::string& key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return defaults().at(key);
    return *it;
  }
  int64_t integer(const std::string& key, int64_t min_value, int64_t max_value) {
    const json& v = get(key);
    if (!in_range(v, min_value, max_value)) {
      problem(key, "must be an integer from " + std::to_string(min_value) + " to " + std::to_string(max_value) +
                       ", got " + v.dump());
      return min_value;
    }
    return v.get<int64_t>();
  }
  // A finite number; `positive`: > 0.
  double number(const std::string& key, bool positive = false) {
    const json& v = get(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || (positive && !(v.get<double>() > 0))) {
      problem(key, std::string("must be a ") + (positive ? "positive " : "") + "finite number, got " + v.dump());
      return positive ? 1 : 0;
    }
    return v.get<double>();
  }
  bool boolean(const std::string& key) {
    const json& v = get(key);
    if (!v.is_boolean()) {
      problem(key, "must be true or false, got " + v.dump());
      return false;
    }
    return v.get<bool>();
  }
  // An int broadcast to n blocks, or a list of n ints. n = 0: the block count is unknown (block_out_channels
  // is broken and reported): any length is taken, so that no follow-on problem is reported.
  std::vector<int64_t> per_block(const std::string& key, size_t n, int64_t min_value, int64_t max_value) {
    const json& v = get(key);
    if (in_range(v, min_value, max_value)) return std::vector<int64_t>(std::max<size_t>(n, 1), v.get<int64_t>());
    if (v.is_array() && (v.size() == n || (n == 0 && !v.empty())) &&
        std::all_of(v.begin(), v.end(), [&](const json& e) { return in_range(e, min_value, max_value); }))
      return v.get<std::vector<int64_t>>();
    problem(key, "must be an integer from " + std::to_string(min_value) + " to " + std::to_string(max_value) +
                     " or a list of " + (n == 0 ? std::string("such integers") : std::to_string(n) + " such integers") +
                     " (one per block), got " + v.dump());
    return std::vector<int64_t>(std::max<size_t>(n, 1), min_value);
  }
  static bool in_range(const json& v, int64_t min_value, int64_t max_value) {
    // Non-negative JSON integers are unsigned in nlohmann (as large as 2^64 - 1): compare before converting.
    if (v.is_number_unsigned())
      return v.get<uint64_t>() <= static_cast<uint64_t>(max_value) && static_cast<int64_t>(v.get<uint64_t>()) >= min_value;
    return v.is_number_integer() && v.get<int64_t>() >= min_value && v.get<int64_t>() <= max_value;
  }
  // Refuses any value other than the listed ones (compared after null -> default).
  void require(const std::string& key, const json& allowed, const std::string& why) {
    const json& v = get(key);
    if (v != allowed) problem(key, "is " + v.dump() + " but prefdiff supports only " + allowed.dump() + " (" + why + ")");
  }
  void problem(const std::string& key, const std::string& msg) { problems_->push_back("'" + key + "' " + msg); }

 private:
  const json& j_;
  std::vector<std::string>* problems_;
};

BlockKind parse_block(const std::string& s, bool down, Reader& r, const std::string& key) {
  if (down && s == "CrossAttnDownBlock2D") return BlockKind::kCrossAttnDown;
  if (down && s == "DownBlock2D") return BlockKind::kDown;
  if (!down && s == "CrossAttnUpBlock2D") return BlockKind::kCrossAttnUp;
  if (!down && s == "UpBlock2D") return BlockKind::kUp;
  r.problem(key, "contains unsupported block type '" + s + "' (supported: " +
                     (down ? "CrossAttnDownBlock2D, DownBlock2D" : "CrossAttnUpBlock2D, UpBlock2D") + ")");
  return down ? BlockKind::kDown : BlockKind::kUp;
}

}  // namespace

// The layers of Unet2dModel (unet.cpp, blocks.cpp, resnet.cpp, transformer.cpp), counted without building
// them. In double: a hostile config cannot overflow it, and real models are counted exactly.
double Unet2dConfig::parameter_count() const {
  auto conv = [](double in, double out, double k) { return out * in * k * k + out; };
  auto linear = [](double in, double out, bool bias) { return out * in + (bias ? out : 0); };
  auto norm = [](double channels) { return 2 * channels; };
  const double temb = static_cast<double>(time_embedding_dim);
  auto resnet = [&](double in, double out) {
    return norm(in) + conv(in, out, 3) + linear(temb, out, true) + norm(out) + conv(out, out, 3) +
           (in != out ? conv(in, out, 1) : 0);
  };
  auto transformer = [&](double heads, double channels, double layers, double context) {
    const double inner = heads * std::floor(channels / heads);
    const double attention_self = 3 * inner * inner + linear(inner, inner, true);
    const double attention_cross = inner * inner + 2 * inner * context + linear(inner, inner, true);
    const double feed_forward = linear(inner, 8 * inner, true) + linear(4 * inner, inner, true);
    const double block = 3 * norm(inner) + attention_self + attention_cross + feed_forward;
    // proj_in and proj_out have the same count as 1x1 convolutions and as linear layers.
    return norm(channels) + linear(channels, inner, true) + layers * block + linear(inner, channels, true);
  };
  const size_t n = block_out_channels.size();
  if (n == 0) return 0;
  std::vector<double> ch(block_out_channels.begin(), block_out_channels.end());
  double total = conv(static_cast<double>(in_channels), ch[0], static_cast<double>(conv_in_kernel)) +
                 linear(ch[0], temb, true) + linear(temb, temb, true);
  if (text_time) total += linear(static_cast<double>(projection_class_embeddings_input_dim), temb, true) + linear(temb, temb, true);
  double out = ch[0];
  for (size_t i = 0; i < n; ++i) {  // down blocks
    const double in = out;
    out = ch[i];
    const double layers = static_cast<double>(layers_per_block[i]);
    total += resnet(in, out) + (layers - 1) * resnet(out, out);
    if (down_blocks[i] == BlockKind::kCrossAttnDown)
      total += layers * transformer(static_cast<double>(num_heads[i]), out, static_cast<double>(transformer_layers_per_block[i]),
                                    static_cast<double>(cross_attention_dim[i]));
    if (i + 1 < n) total += conv(out, out, 3);
  }
  if (has_mid_block)
    total += 2 * resnet(ch[n - 1], ch[n - 1]) +
             transformer(static_cast<double>(num_heads[n - 1]), ch[n - 1], static_cast<double>(transformer_layers_per_block[n - 1]),
                         static_cast<double>(cross_attention_dim[n - 1]));
  out = ch[n - 1];
  for (size_t i = 0; i < n; ++i) {  // up blocks, over the reversed per-block lists
    const size_t r = n - 1 - i;
    const double prev_out = out;
    out = ch[r];
    const double skip_in = ch[r == 0 ? 0 : r - 1];  // the input channels of the matching down block
    const int64_t layers = layers_per_block[r] + 1;
    for (int64_t j = 0; j < layers; ++j)
      total += resnet((j == 0 ? prev_out : out) + (j == layers - 1 ? skip_in : out), out);
    if (up_blocks[i] == BlockKind::kCrossAttnUp)
      total += static_cast<double>(layers) *
               transformer(static_cast<double>(num_heads[r]), out, static_cast<double>(transformer_layers_per_block[r]),
                           static_cast<double>(cross_attention_dim[r]));
    if (i + 1 < n) total += conv(out, out, 3);
  }
  return total + norm(ch[0]) + conv(ch[0], static_cast<double>(out_channels), static_cast<double>(conv_out_kernel));
}

json Unet2dConfig::to_diffusers_json(const json& source) {
  json out = defaults();
  for (auto it = source.begin(); it != source.end(); ++it)
    if (out.contains(it.key())) out[it.key()] = it.value();
  out["_class_name"] = "UNet2DConditionModel";
  out["_diffusers_version"] = source.value("_diffusers_version", std::string("0.30.3"));
  return out;
}

Unet2dConfig Unet2dConfig::from_json(const json& j, const std::string& origin) {
  std::vector<std::string> problems;
  if (!j.is_object())
    throw ConfigError(origin + ": the UNet config must be a JSON object ({\"block_out_channels\": [...], ...}), got " +
                      std::string(j.type_name()) + ". HINT: pass the model's config.json as diffusers writes it.");
  std::vector<std::string> known;
  for (auto d = defaults().begin(); d != defaults().end(); ++d) known.push_back(d.key());
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k.empty() || k[0] == '_' || defaults().contains(k)) continue;
    problems.push_back("unknown key '" + k + "'" + did_you_mean(k, known));
  }
  if (j.contains("_class_name") && j["_class_name"] != "UNet2DConditionModel")
    problems.push_back("'_class_name' is " + j["_class_name"].dump() + ", expected \"UNet2DConditionModel\"");

  Reader r(j, &problems);
  Unet2dConfig c;
  c.in_channels = r.integer("in_channels", 1, kMaxChannels);
  c.out_channels = r.integer("out_channels", 1, kMaxChannels);
  c.center_input_sample = r.boolean("center_input_sample");
  c.flip_sin_to_cos = r.boolean("flip_sin_to_cos");
  c.freq_shift = r.number("freq_shift");

  // Every bad entry named; when the list is broken its length is unknown, and the checks of the other
  // per-block keys against it are skipped (they would only repeat this problem).
  const json& boc = r.get("block_out_channels");
  if (!boc.is_array() || boc.empty()) {
    r.problem("block_out_channels", "must be a non-empty list of channel counts (one per block), got " + boc.dump());
  } else {
    bool ok = true;
    for (size_t i = 0; i < boc.size(); ++i)
      if (!Reader::in_range(boc[i], 1, kMaxChannels)) {
        ok = false;
        r.problem("block_out_channels", "entry " + std::to_string(i) + " is " + boc[i].dump() +
                                            "; each must be an integer from 1 to " + std::to_string(kMaxChannels));
      }
    if (ok) c.block_out_channels = boc.get<std::vector<int64_t>>();
  }
  const size_t n = c.block_out_channels.size();  // 0: unknown

  for (const char* key : {"down_block_types", "up_block_types"}) {
    const json& v = r.get(key);
    bool down = std::string(key) == "down_block_types";
    if (!v.is_array() || (n > 0 && v.size() != n)) {
      r.problem(key, n > 0 ? "must list one block type per entry of block_out_channels (" + std::to_string(n) + "), got " + v.dump()
                           : "must be a list of block types, got " + v.dump());
      continue;
    }
    for (const auto& e : v) {
      if (!e.is_string()) {
        r.problem(key, "must contain strings");
        continue;
      }
      (down ? c.down_blocks : c.up_blocks).push_back(parse_block(e.get<std::string>(), down, r, key));
    }
  }
  const json& mid = r.get("mid_block_type");
  if (j.contains("mid_block_type") && j["mid_block_type"].is_null()) {
    c.has_mid_block = false;
  } else if (mid != "UNetMidBlock2DCrossAttn") {
    r.problem("mid_block_type", "is " + mid.dump() + "; supported: \"UNetMidBlock2DCrossAttn\" or null (no mid block)");
  }

  c.layers_per_block = r.per_block("layers_per_block", n, 1, kMaxLayers);
  c.downsample_padding = r.integer("downsample_padding", 0, kMaxKernel);
  c.mid_block_scale_factor = r.number("mid_block_scale_factor", true);
  c.dropout = r.number("dropout");
  if (c.dropout < 0 || c.dropout >= 1) r.problem("dropout", "must be in [0, 1)");
  const json& groups = r.get("norm_num_groups");
  if (j.contains("norm_num_groups") && j["norm_num_groups"].is_null())
    r.problem("norm_num_groups", "is null (no output norm), which prefdiff does not support");
  else if (!Reader::in_range(groups, 1, kMaxChannels))
    r.problem("norm_num_groups", "must be an integer from 1 to " + std::to_string(kMaxChannels) + ", got " + groups.dump());
  else
    c.norm_num_groups = groups.get<int64_t>();
  c.norm_eps = r.number("norm_eps", true);  // divides by sqrt(var + eps): 0 or less gives NaN on constant inputs
  c.cross_attention_dim = r.per_block("cross_attention_dim", n, 1, kMaxEmbeddingDim);
  const json& tlpb = r.get("transformer_layers_per_block");
  if (tlpb.is_array() && std::any_of(tlpb.begin(), tlpb.end(), [](const json& e) { return e.is_array(); }))
    r.problem("transformer_layers_per_block", "nested per-layer lists are not supported (use an int or one int per block)");
  else
    c.transformer_layers_per_block = r.per_block("transformer_layers_per_block", n, 1, kMaxLayers);
  // Historical diffusers naming: attention_head_dim holds the number of heads unless num_attention_heads is set.
  const json& nah = r.get("num_attention_heads");
  c.num_heads = r.per_block(nah.is_null() ? "attention_head_dim" : "num_attention_heads", n, 1, kMaxChannels);
  c.use_linear_projection = r.boolean("use_linear_projection");
  r.require("upcast_attention", false, "fp32 attention scores, as SD 2.x configs ask");

  const json& aet = r.get("addition_embed_type");
  if (aet == "text_time") {
    c.text_time = true;
    c.addition_time_embed_dim = r.integer("addition_time_embed_dim", 1, kMaxEmbeddingDim);
    c.projection_class_embeddings_input_dim = r.integer("projection_class_embeddings_input_dim", 1, 16 * kMaxEmbeddingDim);
    if (c.text_embeds_dim() < 0)
      r.problem("projection_class_embeddings_input_dim", "is smaller than 6 * addition_time_embed_dim");
  } else if (!aet.is_null()) {
    r.problem("addition_embed_type", "is " + aet.dump() + "; supported: null or \"text_time\" (SDXL)");
  }
  const json& ted = r.get("time_embedding_dim");
  c.time_embedding_dim = ted.is_null() ? 4 * (c.block_out_channels.empty() ? 1 : c.block_out_channels[0])
                                       : r.integer("time_embedding_dim", 1, kMaxEmbeddingDim);
  c.conv_in_kernel = r.integer("conv_in_kernel", 1, kMaxKernel);
  c.conv_out_kernel = r.integer("conv_out_kernel", 1, kMaxKernel);
  if (c.conv_in_kernel % 2 == 0) r.problem("conv_in_kernel", "must be odd");
  if (c.conv_out_kernel % 2 == 0) r.problem("conv_out_kernel", "must be odd");

  // Features of UNet2DConditionModel that SD1.5/SDXL checkpoints do not use.
  r.require("only_cross_attention", false, "cross-attention-only blocks");
  r.require("act_fn", "silu", "other activations");
  r.require("reverse_transformer_layers_per_block", nullptr, "asymmetric up blocks");
  r.require("encoder_hid_dim", nullptr, "encoder_hid_proj");
  r.require("encoder_hid_dim_type", nullptr, "encoder_hid_proj");
  r.require("dual_cross_attention", false, "dual cross-attention");
  r.require("class_embed_type", nullptr, "class embeddings");
  r.require("num_class_embeds", nullptr, "class embeddings");
  r.require("resnet_time_scale_shift", "default", "scale-shift time conditioning");
  r.require("time_embedding_type", "positional", "Fourier time embeddings");
  r.require("time_embedding_act_fn", nullptr, "an activation after the time embedding");
  r.require("timestep_post_act", nullptr, "an activation inside the time embedding");
  r.require("time_cond_proj_dim", nullptr, "LCM guidance conditioning");
  r.require("attention_type", "default", "gated attention");
  r.require("class_embeddings_concat", false, "class embeddings");
  r.require("cross_attention_norm", nullptr, "normed cross-attention context");
  const json& st = r.get("sample_size");
  if (!st.is_null() && !st.is_number_integer() && !st.is_array()) r.problem("sample_size", "must be an integer or a list");
  // Ignored by design (spec): addition_embed_type_num_heads, resnet_skip_time_act, resnet_out_scale_factor,
  // mid_block_only_cross_attention: diffusers passes none of them to these block types.

  for (size_t i = 0; i < c.block_out_channels.size() && i < c.num_heads.size(); ++i) {
    if (c.block_out_channels[i] % c.norm_num_groups != 0)
      problems.push_back("block_out_channels[" + std::to_string(i) + "] = " + std::to_string(c.block_out_channels[i]) +
                         " is not divisible by norm_num_groups = " + std::to_string(c.norm_num_groups));
    size_t n_up = c.up_blocks.size();
    bool attends = (i < c.down_blocks.size() && c.down_blocks[i] == BlockKind::kCrossAttnDown) ||
                   (n_up == c.block_out_channels.size() && c.up_blocks[n_up - 1 - i] == BlockKind::kCrossAttnUp) ||
                   (c.has_mid_block && i + 1 == c.block_out_channels.size());
    if (attends && c.block_out_channels[i] < c.num_heads[i])
      problems.push_back("block " + std::to_string(i) + " has " + std::to_string(c.block_out_channels[i]) +
                         " channels but " + std::to_string(c.num_heads[i]) + " attention heads");
  }
  // Last, on a config whose every value is in range: the size of the whole model, before any allocation.
  if (problems.empty()) {
    const double params = c.parameter_count();
    if (params > kMaxParameters) {
      char text[160];
      std::snprintf(text, sizeof text, "describes a UNet of %.3g parameters (%.3g GB in float32); prefdiff builds at "
                    "most %.3g (SDXL's UNet has 2.6e9)", params, params * 4 / 1e9, kMaxParameters);
      problems.push_back(std::string(text) + ": check block_out_channels, layers_per_block, "
                         "transformer_layers_per_block and cross_attention_dim");
    }
  }
  if (!problems.empty()) {
    std::ostringstream msg;
    msg << origin << ": " << problems.size() << " problem(s) in the UNet config:";
    for (const auto& p : problems) msg << "\n  " << p;
    msg << "\nHINT: prefdiff builds diffusers' UNet2DConditionModel as used by SD1.5/SDXL; see docs/backbones.md.";
    throw ConfigError(msg.str());
  }
  return c;
}

}  // namespace prefdiff::unet2d
