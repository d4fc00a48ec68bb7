#pragma once
// The "unet2d" backbone: diffusers UNet2DConditionModel behind prefdiff::Backbone.

#include <memory>

#include "prefdiff/backbone.hpp"
#include "prefdiff/unet2d/unet.hpp"

namespace prefdiff::unet2d {

class Unet2dBackbone final : public Backbone {
 public:
  // Random init (PyTorch defaults) from a diffusers UNet config.json object.
  // `origin` names the config in errors (a file path when it came from one).
  Unet2dBackbone(const nlohmann::json& config, const BackboneOptions& options, const std::string& origin = "config.json");
  // Config and weights from a diffusers pipeline root or its unet/ folder.
  static std::unique_ptr<Unet2dBackbone> from_pretrained(const std::filesystem::path& folder,
                                                         const BackboneOptions& options = {});

  std::string id() const override { return "unet2d"; }
  const nlohmann::json& config() const override { return config_json_; }
  bool requires_added_conditions() const override { return model_->config().text_time; }
  at::Tensor forward(const at::Tensor& noisy_latents, const at::Tensor& timesteps,
                     const at::Tensor& encoder_hidden_states,
                     const std::optional<AddedConditions>& added = std::nullopt) override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() const override;
  torch::nn::Module& module() override;
  void load_weights(const std::filesystem::path& folder, const std::string& variant = "") override;
  // Writes <folder>/config.json and the weights (pass <root>/unet for a pipeline layout).
  void save(const std::filesystem::path& folder, const BackboneSaveOptions& options = {}) const override;
  void to(c10::Device device, std::optional<c10::ScalarType> dtype = std::nullopt) override;
  c10::Device device() const override;
  c10::ScalarType dtype() const override;
  void train(bool on = true) override;
  void set_requires_grad(bool on) override;
  void set_gradient_checkpointing(bool on) override { model_->set_gradient_checkpointing(on); }
  void set_activation_budget(std::optional<double> bytes) override { model_->set_activation_budget(bytes); }
  nlohmann::json checkpointing_summary() const override;
  void set_channels_last(bool on) override;
  void set_autocast(std::optional<c10::ScalarType> dtype) override { autocast_ = dtype; }

  // LoRA (lora.hpp): adapters on the Linear and Conv2d layers, one switch for all of them.
  std::vector<std::string> add_lora(const LoraOptions& options) override;
  void set_lora(const std::vector<model_io::LoraTensors>& adapters, double dropout = 0.0) override;
  std::vector<model_io::LoraTensors> lora() const override;
  std::vector<std::string> lora_layers() const override;
  void set_lora_enabled(bool on) override { lora_control_->enabled = on; }
  void set_lora_scale(double scale) override { lora_control_->multiplier = scale; }
  void merge_lora(double scale = 1.0) override;

  Unet2dModel& model() { return model_; }

 private:
  nlohmann::json config_json_;
  Unet2dModel model_{nullptr};
  std::optional<c10::ScalarType> autocast_;
  std::shared_ptr<LoraControl> lora_control_ = std::make_shared<LoraControl>();
};

}  // namespace prefdiff::unet2d
