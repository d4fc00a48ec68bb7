#include "prefdiff/model_io/lora_file.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <map>
#include <optional>

#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::model_io {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

std::string kohya_name(const std::string& module) {
  std::string out = "lora_unet_" + module;
  for (char& c : out)
    if (c == '.') c = '_';
  return out;
}

// "… (and N more)": the first few offending keys, for messages.
std::string first_keys(const std::vector<std::string>& keys) {
  std::string out;
  for (size_t i = 0; i < keys.size() && i < 3; ++i) out += (i ? ", '" : "'") + keys[i] + "'";
  if (keys.size() > 3) out += " (and " + std::to_string(keys.size() - 3) + " more)";
  return out;
}

// One key, split into the module it adapts and what it is: "down", "up" or "alpha".
struct KeyPart {
  std::string module, part, format;
};

std::optional<KeyPart> split_key(const std::string& key) {
  std::string k = key;
  for (const char* prefix : {"unet.", "base_model.model."})
    if (starts_with(k, prefix)) k = k.substr(std::string(prefix).size());
  const std::pair<const char*, const char*> suffixes[] = {
      {".lora.down.weight", "down"}, {".lora.up.weight", "up"},           // diffusers
      {".lora_A.weight", "down"},    {".lora_B.weight", "up"},            // peft
      {".lora_A.default.weight", "down"}, {".lora_B.default.weight", "up"},
      {".lora_down.weight", "down"}, {".lora_up.weight", "up"},           // kohya
      {".alpha", "alpha"}};
  for (const auto& [suffix, part] : suffixes)
    if (ends_with(k, suffix)) {
      const std::string module = k.substr(0, k.size() - std::string(suffix).size());
      const std::string s(suffix);
      const std::string format = starts_with(module, "lora_") ? "kohya" : s.find("lora_") != std::string::npos ? "peft" : "diffusers";
      return KeyPart{module, part, format};
    }
  return std::nullopt;
}

bool text_encoder_key(const std::string& key) {
  return starts_with(key, "text_encoder") || starts_with(key, "lora_te");
}

// lora_adapter_metadata (diffusers >= 0.35): keys "unet.<LoraConfig field>" in pipeline files, bare in a
// model's own save_lora_adapter file.
struct Metadata {
  std::optional<double> alpha;
  std::map<std::string, double> alpha_pattern;
};

Metadata read_metadata(const SafetensorsFile& file) {
  Metadata m;
  auto it = file.header().metadata.find("lora_adapter_metadata");
  if (it == file.header().metadata.end()) return m;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const std::exception& e) {
    throw ModelIoError(file.path().string() + ": the header's lora_adapter_metadata is not JSON (" + e.what() +
                       "). HINT: rewrite the file with diffusers' save_lora_weights");
  }
  for (const char* prefix : {"unet.", ""}) {
    const std::string alpha_key = std::string(prefix) + "lora_alpha", pattern_key = std::string(prefix) + "alpha_pattern";
    if (j.contains(alpha_key) && j[alpha_key].is_number()) {
      m.alpha = j[alpha_key].get<double>();
      if (j.contains(pattern_key) && j[pattern_key].is_object())
        for (const auto& [k, v] : j[pattern_key].items())
          if (v.is_number()) m.alpha_pattern[k] = v.get<double>();
      break;
    }
  }
  return m;
}

}  // namespace

LoraFile read_lora_file(const std::filesystem::path& path, const std::vector<std::string>& layers) {
  if (!std::filesystem::exists(path))
    throw ModelIoError("LoRA file " + path.string() + " does not exist. HINT: diffusers writes it as "
                       "<folder>/pytorch_lora_weights.safetensors");
  const SafetensorsFile file = SafetensorsFile::open(path);
  const Metadata metadata = read_metadata(file);
  std::map<std::string, std::string> kohya_to_module;
  for (const std::string& layer : layers) kohya_to_module[kohya_name(layer)] = layer;

  LoraFile out;
  std::map<std::string, size_t> index;  // module -> position in out.adapters
  std::map<std::string, double> alphas;
  std::vector<std::string> unknown, unplaced;
  for (const std::string& key : file.names()) {
    if (text_encoder_key(key)) {
      out.ignored.push_back(key);
      continue;
    }
    std::optional<KeyPart> k = split_key(key);
    if (!k) {
      unknown.push_back(key);
      continue;
    }
    if (k->format == "kohya") {
      auto m = kohya_to_module.find(k->module);
      if (m == kohya_to_module.end()) {
        unplaced.push_back(key);
        continue;
      }
      k->module = m->second;
    }
    if (out.format.empty() && k->part != "alpha") out.format = k->format;
    if (k->part == "alpha") {
      alphas[k->module] = file.load(key, at::kDouble).item<double>();
      continue;
    }
    auto [it, fresh] = index.emplace(k->module, out.adapters.size());
    if (fresh) out.adapters.push_back(LoraTensors{k->module, {}, {}, 0.0});
    (k->part == "down" ? out.adapters[it->second].down : out.adapters[it->second].up) = file.load(key);
  }
  if (!unknown.empty())
    throw ModelIoError("LoRA file " + path.string() + ": " + std::to_string(unknown.size()) +
                       " key(s) in no LoRA naming prefdiff reads: " + first_keys(unknown) +
                       ". HINT: prefdiff reads diffusers' unet.<module>.lora.down/up.weight, peft's "
                       "<module>.lora_A/lora_B.weight and kohya's lora_unet_<module>.lora_down/lora_up.weight + .alpha");
  if (!unplaced.empty())
    throw ModelIoError("LoRA file " + path.string() + ": " + std::to_string(unplaced.size()) +
                       " kohya-style key(s) name no layer of this UNet: " + first_keys(unplaced) +
                       ". HINT: the file was trained for another model (an SDXL LoRA in original-SD block names "
                       "such as lora_unet_input_blocks_* is not converted), or for a text encoder");
  std::vector<std::string> incomplete;
  for (LoraTensors& a : out.adapters) {
    if (!a.down.defined() || !a.up.defined()) {
      incomplete.push_back(a.module + (a.down.defined() ? " (no up weight)" : " (no down weight)"));
      continue;
    }
    if (auto it = alphas.find(a.module); it != alphas.end()) {
      a.alpha = it->second;
    } else if (auto p = metadata.alpha_pattern.find(a.module); p != metadata.alpha_pattern.end()) {
      a.alpha = p->second;
    } else {
      a.alpha = metadata.alpha.value_or(static_cast<double>(a.down.size(0)));
    }
  }
  if (!incomplete.empty())
    throw ModelIoError("LoRA file " + path.string() + ": " + std::to_string(incomplete.size()) +
                       " adapter(s) lack half of their weights: " + first_keys(incomplete) +
                       ". HINT: the file is truncated or was written by a tool that splits adapters");
  if (out.adapters.empty())
    throw ModelIoError("LoRA file " + path.string() + " holds no UNet adapter" +
                       (out.ignored.empty() ? std::string() : " (only text-encoder ones: " + first_keys(out.ignored) + ")") +
                       ". HINT: pass a UNet LoRA");
  return out;
}

void write_lora_file(const std::filesystem::path& path, const std::vector<LoraTensors>& adapters) {
  if (adapters.empty()) throw ModelIoError("no LoRA adapters to write to " + path.string());
  NamedTensors tensors;
  std::map<int64_t, int> rank_count;
  std::map<double, int> alpha_count;
  nlohmann::json targets = nlohmann::json::array();
  for (const LoraTensors& a : adapters) {
    tensors.emplace_back("unet." + a.module + ".lora.down.weight", a.down.detach());
    tensors.emplace_back("unet." + a.module + ".lora.up.weight", a.up.detach());
    ++rank_count[a.down.size(0)];
    ++alpha_count[a.alpha];
    targets.push_back(a.module);
  }
  auto most = [](const auto& counts) {
    auto best = counts.begin();
    for (auto it = counts.begin(); it != counts.end(); ++it)
      if (it->second > best->second) best = it;
    return best->first;
  };
  const int64_t r = most(rank_count);
  const double alpha = most(alpha_count);
  nlohmann::json meta = {{"unet.r", r}, {"unet.lora_alpha", alpha}, {"unet.target_modules", targets}};
  nlohmann::json rank_pattern = nlohmann::json::object(), alpha_pattern = nlohmann::json::object();
  for (const LoraTensors& a : adapters) {
    if (a.down.size(0) != r) rank_pattern[a.module] = a.down.size(0);
    if (a.alpha != alpha) alpha_pattern[a.module] = a.alpha;
  }
  if (!rank_pattern.empty()) meta["unet.rank_pattern"] = rank_pattern;
  if (!alpha_pattern.empty()) meta["unet.alpha_pattern"] = alpha_pattern;
  write_safetensors(path, tensors, {{"format", "pt"}, {"lora_adapter_metadata", meta.dump(2)}});
}

}  // namespace prefdiff::model_io
