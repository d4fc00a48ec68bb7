#pragma once
// diffusers AutoencoderKL (the SD1.5 / SDXL VAE) as a LibTorch module whose named_parameters() are
// diffusers' state-dict names. Images are [B,C,H,W] in [-1,1]; latents are [B,latent_channels,H/8,W/8]
// for SD. encode() gives the posterior (diffusers' DiagonalGaussianDistribution), decode() the image;
// the *_scaled_* calls add the config's latent normalisation (what the UNet sees).

#include <ATen/core/Generator.h>

#include <filesystem>
#include <optional>
#include <string>

#include "vae/vae_coders.hpp"
#include "vae/vae_config.hpp"

namespace prefdiff::vae {

// diffusers DiagonalGaussianDistribution: moments = [mean | logvar] along channels, logvar clamped to
// [-30, 20], std = exp(logvar / 2).
struct LatentDistribution {
  at::Tensor mean, logvar, std;

  static LatentDistribution from_moments(const at::Tensor& moments);
  const at::Tensor& mode() const { return mean; }
  // mean + std * N(0, 1), the noise drawn from `generator` (the default generator when none).
  at::Tensor sample(std::optional<at::Generator> generator = std::nullopt) const;
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  // opts: dtype and device of the parameters (use vae::compute_dtype to honour force_upcast).
  AutoencoderKLImpl(AutoencoderKlConfig config, const at::TensorOptions& opts);

  // Inputs of any float dtype are moved to the parameters' device and dtype; outputs have that dtype.
  // `taps` (optional) receives diffusers' intermediates: "encoder.conv_in", "encoder.down_blocks.<i>",
  // "encoder.mid_block", "encoder.conv_out", "quant_conv" / "post_quant_conv", "decoder.conv_in",
  // "decoder.mid_block", "decoder.up_blocks.<i>".
  LatentDistribution encode(const at::Tensor& images, Taps* taps = nullptr);
  at::Tensor decode(const at::Tensor& latents, Taps* taps = nullptr);  // raw (unscaled) latents
  // decode(encode(images).mode()), or a posterior sample: diffusers' AutoencoderKL.forward.
  at::Tensor forward(const at::Tensor& images, bool sample_posterior = false,
                     std::optional<at::Generator> generator = std::nullopt);

  // Latent normalisation of the config: (z - shift) * scaling_factor, or per channel
  // (z - latents_mean) * scaling_factor / latents_std; unscale_latents is its inverse.
  at::Tensor scale_latents(const at::Tensor& z) const;
  at::Tensor unscale_latents(const at::Tensor& scaled) const;
  // What data import and sampling call: scaled posterior mean (or sample), and images from scaled latents.
  at::Tensor encode_scaled(const at::Tensor& images, bool sample = false,
                           std::optional<at::Generator> generator = std::nullopt);
  at::Tensor decode_scaled(const at::Tensor& scaled_latents);

  // Encode/decode at most n images per encoder/decoder call (0: the whole batch at once). The results
  // equal the unsliced ones; peak activation memory scales with n instead of the batch.
  void set_slice_size(int64_t n);
  int64_t slice_size() const { return slice_size_; }

  const AutoencoderKlConfig& config() const { return config_; }
  c10::ScalarType dtype() const { return quant_or_first_param().scalar_type(); }
  c10::Device device() const { return quant_or_first_param().device(); }

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};  // absent when use_(post_)quant_conv is false

 private:
  at::Tensor encode_moments(const at::Tensor& images, Taps* taps);
  at::Tensor decode_raw(const at::Tensor& latents, Taps* taps);
  at::Tensor channel_vector(const std::vector<double>& v, const at::Tensor& like) const;
  const at::Tensor& quant_or_first_param() const { return encoder->conv_in->weight; }

  AutoencoderKlConfig config_;
  int64_t slice_size_ = 0;
};
TORCH_MODULE(AutoencoderKL);

// The dtype a VAE runs in when `requested` is asked for: float32 instead of float16/bfloat16 when the
// config sets force_upcast (the SDXL VAE overflows in half precision), else `requested`.
c10::ScalarType compute_dtype(const AutoencoderKlConfig& config, c10::ScalarType requested);

struct VaeOptions {
  c10::Device device = c10::Device(c10::kCPU);
  c10::ScalarType dtype = c10::ScalarType::Float;  // requested; see compute_dtype
  std::string variant;                             // "fp16" -> diffusion_pytorch_model.fp16.safetensors
  int64_t slice_size = 0;                          // see set_slice_size
};

// Config and weights from a diffusers pipeline root (its vae/) or the vae folder itself, in eval mode.
// Weights: diffusion_pytorch_model[.variant].safetensors or its shards; diffusers' deprecated attention
// names (query/key/value/proj_attn) are accepted. Errors name the file and every bad tensor or key.
AutoencoderKL load_autoencoder_kl(const std::filesystem::path& folder, const VaeOptions& options = {});

}  // namespace prefdiff::vae
