#include "prefdiff/train/adapters_off_reference.hpp"

namespace prefdiff {
namespace {

// Switches the adapters off for one scope, and back on even when the forward pass throws.
class AdaptersOff {
 public:
  explicit AdaptersOff(Backbone& model) : model_(model) { model_.set_lora_enabled(false); }
  ~AdaptersOff() { model_.set_lora_enabled(true); }
  AdaptersOff(const AdaptersOff&) = delete;
  AdaptersOff& operator=(const AdaptersOff&) = delete;

 private:
  Backbone& model_;
};

}  // namespace

at::Tensor AdaptersOffReference::forward(const at::Tensor& noisy_latents, const at::Tensor& timesteps,
                                         const at::Tensor& encoder_hidden_states, const std::optional<AddedConditions>& added) {
  AdaptersOff off(policy_);
  return policy_.forward(noisy_latents, timesteps, encoder_hidden_states, added);
}

void AdaptersOffReference::refuse(const char* what) const {
  throw BackboneError(std::string("the LoRA reference is the policy with its adapters off; ") + what +
                      " belongs to the policy");
}

}  // namespace prefdiff
