// The DPO reference of a LoRA run: the policy itself with its adapters switched off for the call (as
// diffusers' Diffusion-DPO LoRA example does with disable_adapters()), so one UNet is in memory. The
// step calls it like any reference; everything that would change the shared model (train/eval mode,
// requires_grad, device, dtype, loading) is left to the policy.
#pragma once

#include "prefdiff/backbone.hpp"

namespace prefdiff {

class AdaptersOffReference final : public Backbone {
 public:
  explicit AdaptersOffReference(Backbone& policy) : policy_(policy) {}

  std::string id() const override { return policy_.id(); }
  const nlohmann::json& config() const override { return policy_.config(); }
  bool requires_added_conditions() const override { return policy_.requires_added_conditions(); }
  at::Tensor forward(const at::Tensor& noisy_latents, const at::Tensor& timesteps, const at::Tensor& encoder_hidden_states,
                     const std::optional<AddedConditions>& added = std::nullopt) override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override { return policy_.named_parameters(); }
  torch::nn::Module& module() override { return policy_.module(); }
  void load_weights(const std::filesystem::path&, const std::string& = "") override { refuse("load_weights"); }
  void save(const std::filesystem::path& folder, const BackboneSaveOptions& options = {}) const override {
    policy_.save(folder, options);  // the base weights: what the reference is
  }
  void to(c10::Device, std::optional<c10::ScalarType> = std::nullopt) override {}
  c10::Device device() const override { return policy_.device(); }
  c10::ScalarType dtype() const override { return policy_.dtype(); }
  void train(bool) override {}
  void set_requires_grad(bool) override {}
  void set_gradient_checkpointing(bool) override {}
  void set_activation_budget(std::optional<double>) override {}
  nlohmann::json checkpointing_summary() const override { return policy_.checkpointing_summary(); }
  void set_channels_last(bool) override {}
  void set_autocast(std::optional<c10::ScalarType>) override {}

 private:
  [[noreturn]] void refuse(const char* what) const;
  Backbone& policy_;
};

}  // namespace prefdiff
