#pragma once
// diffusers UNet2DConditionModel (SD1.5 / SDXL structures) as a LibTorch module whose named_parameters()
// are diffusers' state-dict names (spec: backbones.md sections 1-2).

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "prefdiff/unet2d/activation_memory.hpp"
#include "prefdiff/unet2d/blocks.hpp"
#include "prefdiff/unet2d/config.hpp"

namespace prefdiff::unet2d {

// diffusers get_timestep_embedding, always in float32: [B] -> [B, dim].
at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift);

class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in, int64_t dim, const at::TensorOptions& opts);
  at::Tensor forward(const at::Tensor& x);  // linear_2(silu(linear_1(x)))
  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// Diagnostic access to one forward pass (golden tests, debugging).
struct ForwardProbe {
  // Filled: intermediate outputs keyed like diffusers modules ("time_proj", "emb", "down_blocks.0", ...).
  std::map<std::string, at::Tensor> taps;
  // Optional inputs: when defined, used instead of computing the sinusoidal embeddings. Float32 sin/cos/exp
  // differ by a few ulp between math libraries, so cross-library float64 comparisons feed the reference's.
  at::Tensor time_proj;      // [B, block_out_channels[0]]
  at::Tensor add_time_proj;  // [6B, addition_time_embed_dim] (text_time only)
};

class Unet2dModelImpl : public torch::nn::Module {
 public:
  // opts: dtype and device of the parameters (the meta device builds the tree without memory).
  Unet2dModelImpl(Unet2dConfig config, const at::TensorOptions& opts);

  // sample [B,Cin,H,W]; timesteps scalar, [1] or [B] (int or float); encoder_hidden_states [B,S,X];
  // text_embeds [B,P] and time_ids [B,6] for text_time (SDXL) configs. Returns [B,Cout,H,W].
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timesteps, const at::Tensor& encoder_hidden_states,
                     const at::Tensor& text_embeds = {}, const at::Tensor& time_ids = {},
                     ForwardProbe* probe = nullptr);

  const Unet2dConfig& config() const { return config_; }
  // Activation checkpointing of training forwards, by unit (activation_memory.hpp): every unit or none;
  // or, when a budget is set, the units plan_checkpointing() picks for each input shape so that the estimated
  // saved activations and one unit's recomputation fit in `bytes`; or, for experiments and tests, exactly the
  // named units. The most specific setting wins: units, then budget, then all/none.
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  bool gradient_checkpointing() const { return checkpointing_ || budget_.has_value() || units_.has_value(); }
  void set_activation_budget(std::optional<double> bytes);
  void set_checkpoint_units(std::optional<std::vector<std::string>> names);
  // What the last training forward checkpointed, and why (mode, shape, estimate, the units).
  struct CheckpointChoice {
    std::string mode = "none";  // none, all, budget, units
    ActivationShape shape;
    bool autocast = false;
    double budget_bytes = 0, estimated_peak_bytes = 0, recompute_flops = 0;
    bool fits = true;
    size_t units = 0;
    std::vector<std::string> checkpointed;
  };
  const CheckpointChoice& last_checkpoint_choice() const { return choice_; }
  void set_channels_last(bool on) { channels_last_ = on; }
  bool channels_last() const { return channels_last_; }

  Conv2d conv_in{nullptr}, conv_out{nullptr};
  TimestepEmbedding time_embedding{nullptr}, add_embedding{nullptr};
  torch::nn::ModuleList down_blocks{nullptr}, up_blocks{nullptr};
  MidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};

 private:
  void check_inputs(const at::Tensor& sample, const at::Tensor& ctx, const at::Tensor& text_embeds,
                    const at::Tensor& time_ids) const;
  Unet2dConfig config_;
  std::vector<DownBlock> down_;
  std::vector<UpBlock> up_;
  std::function<bool(const std::string&)> checkpoint_filter(const at::Tensor& sample, const at::Tensor& context);
  bool checkpointing_ = false;
  std::optional<double> budget_;
  std::optional<std::vector<std::string>> units_;
  std::set<std::string> planned_;  // the units of choice_
  CheckpointChoice choice_;
  bool channels_last_ = false;
};
TORCH_MODULE(Unet2dModel);

}  // namespace prefdiff::unet2d
