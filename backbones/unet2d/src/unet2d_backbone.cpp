#include "prefdiff/unet2d/unet2d_backbone.hpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <unistd.h>

#include <cstdio>
#include <algorithm>
#include <map>
#include <set>

#include "prefdiff/instance/did_you_mean.hpp"

#include "prefdiff/model_io/diffusers_folder.hpp"

namespace prefdiff::unet2d {

namespace {

// RAII CUDA autocast, like `with torch.autocast("cuda", dtype)`.
class CudaAutocast {
 public:
  explicit CudaAutocast(c10::ScalarType dtype)
      : prev_enabled_(at::autocast::is_autocast_enabled(at::kCUDA)), prev_dtype_(at::autocast::get_autocast_dtype(at::kCUDA)) {
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCUDA, prev_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, prev_dtype_);
  }

 private:
  bool prev_enabled_;
  c10::ScalarType prev_dtype_;
};

const BackboneRegistrar kRegistrar("unet2d", BackboneFactory{
    "diffusers UNet2DConditionModel (SD1.5, SDXL and compatible configs)",
    [](const nlohmann::json& config, const BackboneOptions& options) -> std::unique_ptr<Backbone> {
      return std::make_unique<Unet2dBackbone>(config, options);
    },
    [](const std::filesystem::path& folder, const BackboneOptions& options) -> std::unique_ptr<Backbone> {
      return Unet2dBackbone::from_pretrained(folder, options);
    }});

// A model larger than this machine's memory is refused before allocation, naming its size, instead of
// failing inside the allocator (or being killed) after allocating most of it.
void check_fits_in_memory(const Unet2dConfig& cfg, const BackboneOptions& options, const std::string& origin) {
  if (!options.device.is_cpu()) return;  // GPU memory is checked by its allocator, with a clear message
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return;
  const double memory = static_cast<double>(pages) * static_cast<double>(page);
  const double bytes = cfg.parameter_count() * static_cast<double>(c10::elementSize(options.dtype));
  if (bytes <= memory) return;
  char text[256];
  std::snprintf(text, sizeof text, ": the UNet it describes has %.3g parameters, %.3g GB of weights in %s; this "
                "machine has %.3g GB of memory in all.", cfg.parameter_count(), bytes / 1e9, c10::toString(options.dtype),
                memory / 1e9);
  throw ConfigError(origin + text + " HINT: check block_out_channels and layers_per_block, or use a smaller dtype or a GPU.");
}

}  // namespace

Unet2dBackbone::Unet2dBackbone(const nlohmann::json& config, const BackboneOptions& options, const std::string& origin) {
  Unet2dConfig cfg = Unet2dConfig::from_json(config, origin);  // first: its errors name the file
  config_json_ = Unet2dConfig::to_diffusers_json(config);
  check_fits_in_memory(cfg, options, origin);
  model_ = Unet2dModel(cfg, at::TensorOptions().device(options.device).dtype(options.dtype));
}

std::unique_ptr<Unet2dBackbone> Unet2dBackbone::from_pretrained(const std::filesystem::path& folder,
                                                                const BackboneOptions& options) {
  auto dir = model_io::resolve_model_dir(folder, "unet");
  const std::filesystem::path file = dir / "config.json";
  auto b = std::make_unique<Unet2dBackbone>(model_io::read_json_file(file), options, file.string());
  b->load_weights(dir, options.variant);
  return b;
}

at::Tensor Unet2dBackbone::forward(const at::Tensor& noisy_latents, const at::Tensor& timesteps,
                                   const at::Tensor& encoder_hidden_states, const std::optional<AddedConditions>& added) {
  at::Tensor text_embeds = added ? added->text_embeds : at::Tensor();
  at::Tensor time_ids = added ? added->time_ids : at::Tensor();
  if (autocast_ && noisy_latents.is_cuda()) {
    CudaAutocast scope(*autocast_);
    return model_->forward(noisy_latents, timesteps, encoder_hidden_states, text_embeds, time_ids);
  }
  return model_->forward(noisy_latents, timesteps, encoder_hidden_states, text_embeds, time_ids);
}

// An adapter's parameter ("<layer>.lora.down.weight"): not part of the base model's state dict.
static bool is_adapter_parameter(const std::string& name) { return name.find(".lora.") != std::string::npos; }

std::vector<std::pair<std::string, at::Tensor>> Unet2dBackbone::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model_->named_parameters(true))
    if (!is_adapter_parameter(item.key())) out.emplace_back(item.key(), item.value());
  return out;
}

torch::nn::Module& Unet2dBackbone::module() { return *model_; }

nlohmann::json Unet2dBackbone::checkpointing_summary() const {
  const auto& c = model_->last_checkpoint_choice();
  nlohmann::json j{{"mode", c.mode}, {"units", c.units}, {"checkpointed", c.checkpointed.size()},
                   {"names", c.checkpointed}};
  if (c.mode != "none") {
    j["shape"] = {c.shape.batch, c.shape.height, c.shape.width, c.shape.context_len};
    j["autocast"] = c.autocast;
    j["estimated_peak_bytes"] = c.estimated_peak_bytes;
    j["recompute_flops"] = c.recompute_flops;
  }
  if (c.mode == "budget") {
    j["budget_bytes"] = c.budget_bytes;
    j["fits"] = c.fits;
  }
  return j;
}

void Unet2dBackbone::load_weights(const std::filesystem::path& folder, const std::string& variant) {
  auto dir = model_io::resolve_model_dir(folder, "unet");
  auto reader = model_io::CheckpointReader::open(dir, variant);
  model_io::load_state_dict(named_parameters(), reader, "UNet weights from '" + dir.string() + "'");
}

void Unet2dBackbone::save(const std::filesystem::path& folder, const BackboneSaveOptions& options) const {
  model_io::NamedTensors tensors = named_parameters();
  if (options.dtype)
    for (auto& nt : tensors) nt.second = nt.second.detach().to(*options.dtype);
  model_io::SaveOptions so;
  so.variant = options.variant;
  so.max_shard_bytes = options.max_shard_bytes;
  model_io::save_model_folder(folder, config_json_, tensors, so);
}

void Unet2dBackbone::to(c10::Device device, std::optional<c10::ScalarType> dtype) {
  if (dtype)
    model_->to(device, *dtype);
  else
    model_->to(device);
  if (model_->channels_last()) set_channels_last(true);
}

c10::Device Unet2dBackbone::device() const { return model_->conv_in->weight.device(); }
c10::ScalarType Unet2dBackbone::dtype() const { return model_->conv_in->weight.scalar_type(); }

void Unet2dBackbone::train(bool on) { model_->train(on); }

void Unet2dBackbone::set_requires_grad(bool on) {
  for (auto& p : model_->parameters()) p.requires_grad_(on);  // adapters included (training freezes, then adds them)
}

namespace {

// The error for a target pattern that matches no layer, with the closest layer-name suffix.
std::string unmatched_target(const std::string& pattern, const std::vector<AdaptableLayer>& layers) {
  std::set<std::string> suffixes;
  for (const AdaptableLayer& l : layers)
    for (size_t dot = l.name.find('.'); dot != std::string::npos; dot = l.name.find('.', dot + 1))
      suffixes.insert(l.name.substr(dot + 1));
  std::string hint = did_you_mean(pattern, std::vector<std::string>(suffixes.begin(), suffixes.end()));
  return "[lora] target_modules: '" + pattern + "' matches no Linear or Conv2d layer of this UNet" + hint +
         " HINT: a pattern names a layer by its diffusers module name or a dot-separated tail of it (to_q, "
         "attn1.to_out.0, ff.net.2, proj_in, conv1) or is a glob over the whole name (down_blocks.*.to_q)";
}

std::string shape_text(const at::Tensor& t) {
  std::string out = "[";
  for (int64_t i = 0; i < t.dim(); ++i) out += (i ? ", " : "") + std::to_string(t.size(i));
  return out + "]";
}

}  // namespace

std::vector<std::string> Unet2dBackbone::add_lora(const LoraOptions& o) {
  if (o.rank < 1) throw BackboneError("[lora] rank must be at least 1, not " + std::to_string(o.rank));
  const std::vector<AdaptableLayer> layers = adaptable_layers(*model_);
  for (const std::string& pattern : o.target_modules)
    if (std::none_of(layers.begin(), layers.end(), [&](const AdaptableLayer& l) { return lora_target_matches(l.name, pattern); }))
      throw BackboneError(unmatched_target(pattern, layers));
  // Adapters in float32 (float64 in a float64 model) whatever the base weights' dtype: the trained weights.
  const auto options = at::TensorOptions().device(device()).dtype(dtype() == at::kDouble ? at::kDouble : at::kFloat);
  const double std = o.init_std > 0 ? o.init_std : 1.0 / static_cast<double>(o.rank);
  std::vector<std::string> names;
  at::NoGradGuard no_grad;
  for (const AdaptableLayer& l : layers) {
    if (std::none_of(o.target_modules.begin(), o.target_modules.end(),
                     [&](const std::string& p) { return lora_target_matches(l.name, p); }))
      continue;
    at::Tensor down = l.conv ? at::empty({o.rank, l.in, l.kernel, l.kernel}, options) : at::empty({o.rank, l.in}, options);
    at::Tensor up = l.conv ? at::zeros({l.out, o.rank, 1, 1}, options) : at::zeros({l.out, o.rank}, options);
    down.normal_(0.0, std);
    const auto* conv = l.conv ? static_cast<Conv2dImpl*>(l.layer) : nullptr;
    set_adapter(l, LoraAdapter(down.requires_grad_(true), up.requires_grad_(true), o.alpha, o.dropout, lora_control_,
                               conv ? conv->stride() : 1, conv ? conv->padding() : 0));
    names.push_back(l.name);
  }
  return names;
}

void Unet2dBackbone::set_lora(const std::vector<model_io::LoraTensors>& adapters, double dropout) {
  const std::vector<AdaptableLayer> layers = adaptable_layers(*model_);
  std::map<std::string, const AdaptableLayer*> by_name;
  for (const AdaptableLayer& l : layers) by_name[l.name] = &l;
  std::vector<std::string> unknown, misfit;
  for (const model_io::LoraTensors& a : adapters) {
    auto it = by_name.find(a.module);
    if (it == by_name.end()) {
      unknown.push_back(a.module);
      continue;
    }
    const AdaptableLayer& l = *it->second;
    const int64_t r = a.down.dim() > 0 ? a.down.size(0) : 0;
    const bool fits = l.conv ? (a.down.dim() == 4 && a.down.size(1) == l.in && a.down.size(2) == l.kernel &&
                                a.up.dim() == 4 && a.up.size(0) == l.out && a.up.size(1) == r && a.up.size(2) == 1)
                             : (a.down.dim() == 2 && a.down.size(1) == l.in && a.up.dim() == 2 && a.up.size(0) == l.out &&
                                a.up.size(1) == r);
    if (!fits)
      misfit.push_back(a.module + " (down " + shape_text(a.down) + ", up " + shape_text(a.up) + "; the layer is " +
                       (l.conv ? "Conv2d " : "Linear ") + std::to_string(l.in) + " -> " + std::to_string(l.out) +
                       (l.conv ? ", kernel " + std::to_string(l.kernel) : std::string()) + ")");
  }
  auto first = [](const std::vector<std::string>& v) {
    std::string out;
    for (size_t i = 0; i < v.size() && i < 3; ++i) out += (i ? "; '" : "'") + v[i] + "'";
    return v.size() > 3 ? out + " (and " + std::to_string(v.size() - 3) + " more)" : out;
  };
  if (!unknown.empty())
    throw BackboneError("LoRA: " + std::to_string(unknown.size()) + " adapter(s) name no Linear or Conv2d layer of this UNet: " +
                        first(unknown) + ". HINT: the LoRA was trained for another model (check its base, e.g. SD1.5 vs SDXL)");
  if (!misfit.empty())
    throw BackboneError("LoRA: " + std::to_string(misfit.size()) + " adapter(s) do not fit their layer's shape: " +
                        first(misfit) + ". HINT: the LoRA was trained for another model size or config");
  const auto options = at::TensorOptions().device(device()).dtype(dtype() == at::kDouble ? at::kDouble : at::kFloat);
  at::NoGradGuard no_grad;
  for (const model_io::LoraTensors& a : adapters) {
    const AdaptableLayer& l = *by_name.at(a.module);
    const auto* conv = l.conv ? static_cast<Conv2dImpl*>(l.layer) : nullptr;
    set_adapter(l, LoraAdapter(a.down.to(options).clone().requires_grad_(true), a.up.to(options).clone().requires_grad_(true),
                               a.alpha, dropout, lora_control_, conv ? conv->stride() : 1, conv ? conv->padding() : 0));
  }
}

std::vector<model_io::LoraTensors> Unet2dBackbone::lora() const {
  std::vector<model_io::LoraTensors> out;
  for (const AdaptableLayer& l : adaptable_layers(*model_))
    if (LoraAdapter a = adapter_of(l)) out.push_back({l.name, a->down->weight, a->up->weight, a->alpha()});
  return out;
}

std::vector<std::string> Unet2dBackbone::lora_layers() const {
  std::vector<std::string> out;
  for (const AdaptableLayer& l : adaptable_layers(*model_)) out.push_back(l.name);
  return out;
}

void Unet2dBackbone::merge_lora(double scale) {
  at::NoGradGuard no_grad;
  for (const AdaptableLayer& l : adaptable_layers(*model_)) {
    LoraAdapter a = adapter_of(l);
    if (!a) continue;
    at::Tensor& w = l.conv ? static_cast<Conv2dImpl*>(l.layer)->weight : static_cast<LinearImpl*>(l.layer)->weight;
    const double s = scale * a->alpha() / static_cast<double>(a->rank());
    const at::Tensor down = a->down->weight.to(at::kDouble), up = a->up->weight.to(at::kDouble);
    // Conv: up [out, r, 1, 1] x down [r, in, k, k] -> [out, in, k, k].
    at::Tensor delta = l.conv ? at::einsum("or,rikl->oikl", {up.flatten(1), down}) : at::matmul(up, down);
    w.add_((delta * s).to(w.scalar_type()));
    set_adapter(l, nullptr);
  }
}

void Unet2dBackbone::set_channels_last(bool on) {
  at::NoGradGuard no_grad;
  auto fmt = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : model_->parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(fmt));
  model_->set_channels_last(on);
}

}  // namespace prefdiff::unet2d
