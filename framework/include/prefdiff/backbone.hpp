#pragma once
// The denoising-network interface the trainer uses, and the registry that maps a recipe's
// [backbone] id (e.g. "unet2d") to an implementation, so a new backbone needs no trainer change.
//
// Registration: an implementation defines a static BackboneRegistrar in one of its TUs; link it with
// whole-archive semantics (backbones/unet2d exposes target prefdiff_unet2d that does so).

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "prefdiff/model_io/lora_file.hpp"

namespace torch::nn {
class Module;
}

namespace prefdiff {

// SDXL-style micro-conditioning: pooled text embeddings [B,P] and size/crop ids [B,6].
struct AddedConditions {
  at::Tensor text_embeds;
  at::Tensor time_ids;
};

struct BackboneOptions {
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::ScalarType::Float;  // parameter dtype
  std::string variant;                              // weights variant when loading ("fp16", "non_ema", ...)
};

struct BackboneSaveOptions {
  std::string variant;                               // written as diffusion_pytorch_model.<variant>.safetensors
  std::optional<c10::ScalarType> dtype;              // convert on write (default: as held)
  uint64_t max_shard_bytes = 10000000000ULL;         // diffusers' "10GB"
};

// LoRA adapters to add (recipe section [lora], docs/training.md "LoRA").
struct LoraOptions {
  int64_t rank = 4;
  double alpha = 4.0;
  double dropout = 0.0;
  // peft's list semantics: a layer matches when its name equals a pattern or ends with "." + pattern; a
  // pattern with * ? [ is a glob over the whole name.
  std::vector<std::string> target_modules{"to_q", "to_k", "to_v", "to_out.0"};
  double init_std = 0.0;  // std of down's Gaussian init; 0 = 1/rank (peft's "gaussian"); up starts at zero
};

class BackboneError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Backbone {
 public:
  virtual ~Backbone() = default;

  virtual std::string id() const = 0;
  // The model's config as written to config.json (diffusers format for "unet2d").
  virtual const nlohmann::json& config() const = 0;
  // True when forward() needs AddedConditions (SDXL text_time).
  virtual bool requires_added_conditions() const = 0;

  // Predicts epsilon / v (as trained) for noisy latents [B,C,H,W], timesteps (scalar, [1] or [B]) and text
  // conditioning [B,S,X]. Runs under CUDA autocast when set_autocast() chose a dtype.
  virtual at::Tensor forward(const at::Tensor& noisy_latents, const at::Tensor& timesteps,
                             const at::Tensor& encoder_hidden_states,
                             const std::optional<AddedConditions>& added = std::nullopt) = 0;

  // Parameters under their checkpoint names (diffusers state-dict names), in a stable order.
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() const = 0;
  // The underlying LibTorch module (optimizers, DDP parameter broadcast, train/eval).
  virtual torch::nn::Module& module() = 0;

  // Loads weights from a model folder (or a pipeline root, using its subfolder); strict by name and shape.
  virtual void load_weights(const std::filesystem::path& folder, const std::string& variant = "") = 0;
  // Writes config + weights in the layout the reference library loads (diffusers' save_pretrained).
  virtual void save(const std::filesystem::path& folder, const BackboneSaveOptions& options = {}) const = 0;

  virtual void to(c10::Device device, std::optional<c10::ScalarType> dtype = std::nullopt) = 0;
  virtual c10::Device device() const = 0;
  virtual c10::ScalarType dtype() const = 0;

  virtual void train(bool on = true) = 0;
  virtual void set_requires_grad(bool on) = 0;
  virtual void set_gradient_checkpointing(bool on) = 0;
  // Selective activation checkpointing: recompute in backward only as many blocks as needed for a training
  // forward's saved activations (and one block's recomputation) to fit in `bytes`, estimated from the config
  // and each input shape (unet2d: docs/performance.md, "Selective activation checkpointing"). Takes precedence
  // over set_gradient_checkpointing; nullopt returns to it.
  virtual void set_activation_budget(std::optional<double> bytes) = 0;
  // What the last training forward checkpointed: {"mode": none|all|budget|units, "units", "checkpointed" (count),
  // "estimated_peak_bytes", "fits", "names": [...]}, for logs and benchmarks.
  virtual nlohmann::json checkpointing_summary() const = 0;
  virtual void set_channels_last(bool on) = 0;
  // CUDA autocast dtype for forward (kHalf / kBFloat16), or nullopt for none. Ignored on CPU.
  virtual void set_autocast(std::optional<c10::ScalarType> dtype) = 0;

  // LoRA. named_parameters(), load_weights() and save() stay the base model's; adapters are apart.
  // Adds fresh adapters (down ~ N(0, init_std) from the global generator, up = 0) to every layer a target
  // pattern matches and returns their names; a pattern matching no layer is an error naming it.
  virtual std::vector<std::string> add_lora(const LoraOptions& /*options*/) { throw no_lora(); }
  // Installs adapters from a file's tensors, replacing those of the same layers (dropout applies in training).
  // Errors name the first tensors that match no layer or whose shapes do not fit it.
  virtual void set_lora(const std::vector<model_io::LoraTensors>& /*adapters*/, double /*dropout*/ = 0.0) { throw no_lora(); }
  // The adapters (the parameters themselves, in layer order), and as named parameters
  // "<layer>.lora.down.weight" / "<layer>.lora.up.weight" (the optimizer's and the checkpoint's names).
  virtual std::vector<model_io::LoraTensors> lora() const { return {}; }
  std::vector<std::pair<std::string, at::Tensor>> lora_parameters() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (const auto& a : lora()) {
      out.emplace_back(a.module + ".lora.down.weight", a.down);
      out.emplace_back(a.module + ".lora.up.weight", a.up);
    }
    return out;
  }
  // Names of the layers an adapter can wrap.
  virtual std::vector<std::string> lora_layers() const { return {}; }
  // Off: forward() is the base model's (the DPO reference). scale multiplies every adapter's alpha/rank.
  virtual void set_lora_enabled(bool on) { if (on) throw no_lora(); }
  virtual void set_lora_scale(double /*scale*/) { throw no_lora(); }
  // Adds scale * alpha/r * up @ down into the base weights and removes the adapters.
  virtual void merge_lora(double /*scale*/ = 1.0) { throw no_lora(); }

 protected:
  BackboneError no_lora() const { return BackboneError("backbone '" + id() + "' does not support LoRA adapters"); }
};

struct BackboneFactory {
  std::string summary;
  // A randomly initialised backbone from a config (json as in the model folder).
  std::function<std::unique_ptr<Backbone>(const nlohmann::json& config, const BackboneOptions&)> from_config;
  // A backbone from a model folder or pipeline root (config + weights).
  std::function<std::unique_ptr<Backbone>(const std::filesystem::path& folder, const BackboneOptions&)> from_pretrained;
};

class BackboneRegistry {
 public:
  static BackboneRegistry& instance() {
    static BackboneRegistry registry;
    return registry;
  }

  void add(const std::string& id, BackboneFactory factory) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!factories_.emplace(id, std::move(factory)).second)
      throw BackboneError("backbone id '" + id + "' is registered twice");
  }

  std::vector<std::string> ids() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& kv : factories_) out.push_back(kv.first);
    return out;
  }

  const BackboneFactory& get(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = factories_.find(id);
    if (it != factories_.end()) return it->second;
    std::string known;
    for (const auto& kv : factories_) known += (known.empty() ? "" : ", ") + kv.first;
    throw BackboneError("unknown backbone '" + id + "' (registered: " + (known.empty() ? "none" : known) +
                        "). HINT: check [backbone] id in the recipe, or link the backbone's library.");
  }

  std::unique_ptr<Backbone> create(const std::string& id, const nlohmann::json& config,
                                   const BackboneOptions& options = {}) const {
    return get(id).from_config(config, options);
  }
  std::unique_ptr<Backbone> load(const std::string& id, const std::filesystem::path& folder,
                                 const BackboneOptions& options = {}) const {
    return get(id).from_pretrained(folder, options);
  }

 private:
  BackboneRegistry() = default;
  mutable std::mutex mu_;
  std::map<std::string, BackboneFactory> factories_;
};

struct BackboneRegistrar {
  BackboneRegistrar(const std::string& id, BackboneFactory factory) {
    BackboneRegistry::instance().add(id, std::move(factory));
  }
};

}  // namespace prefdiff
