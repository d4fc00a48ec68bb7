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
};

class BackboneError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
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
