#pragma once
// diffusers' VAE Encoder (image -> 2*latent_channels moments) and Decoder (latents -> image).

#include "vae/vae_blocks.hpp"
#include "vae/vae_config.hpp"

namespace prefdiff::vae {

class VaeEncoderImpl : public torch::nn::Module {
 public:
  VaeEncoderImpl(const AutoencoderKlConfig& config, const at::TensorOptions& opts);
  // images [B,in_channels,H,W] -> [B,2*latent_channels,H/f,W/f]; intermediates under "encoder.*" in `taps`.
  at::Tensor forward(const at::Tensor& images, Taps* taps = nullptr);

  Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks{nullptr};
  VaeMidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};

 private:
  std::vector<DownEncoderBlock> down_;
};
TORCH_MODULE(VaeEncoder);

class VaeDecoderImpl : public torch::nn::Module {
 public:
  VaeDecoderImpl(const AutoencoderKlConfig& config, const at::TensorOptions& opts);
  // latents [B,latent_channels,h,w] (after post_quant_conv) -> [B,out_channels,h*f,w*f].
  at::Tensor forward(const at::Tensor& latents, Taps* taps = nullptr);

  Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up_blocks{nullptr};
  VaeMidBlock mid_block{nullptr};
  GroupNorm conv_norm_out{nullptr};

 private:
  std::vector<UpDecoderBlock> up_;
};
TORCH_MODULE(VaeDecoder);

}  // namespace prefdiff::vae
