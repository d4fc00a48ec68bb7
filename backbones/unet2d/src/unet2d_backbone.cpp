#include "prefdiff/unet2d/unet2d_backbone.hpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <unistd.h>

#include <cstdio>

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

std::vector<std::pair<std::string, at::Tensor>> Unet2dBackbone::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : model_->named_parameters(true)) out.emplace_back(item.key(), item.value());
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
  for (auto& p : model_->parameters()) p.requires_grad_(on);
}

void Unet2dBackbone::set_channels_last(bool on) {
  at::NoGradGuard no_grad;
  auto fmt = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  for (auto& p : model_->parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(fmt));
  model_->set_channels_last(on);
}

}  // namespace prefdiff::unet2d
