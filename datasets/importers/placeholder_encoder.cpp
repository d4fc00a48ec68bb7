#include "prefdiff/data/encoder.hpp"

#include <cmath>
#include <stdexcept>

#include "prefdiff/data/half.hpp"
#include "prefdiff/data/stable_id.hpp"

namespace prefdiff::data {

namespace {

// Standard normal values from a counter-based stream keyed by `key` (Box-Muller over splitmix64).
void normals(uint64_t key, size_t n, float scale, float offset, uint16_t* out) {
  for (size_t k = 0; k < n; k += 2) {
    const double u1 = (static_cast<double>(prefdiff::sdk::mix64(key + 2 * k) >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(prefdiff::sdk::mix64(key + 2 * k + 1) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    out[k] = float_to_half(offset + scale * static_cast<float>(r * std::cos(6.283185307179586 * u2)));
    if (k + 1 < n) out[k + 1] = float_to_half(offset + scale * static_cast<float>(r * std::sin(6.283185307179586 * u2)));
  }
}

}  // namespace

PlaceholderEncoder::PlaceholderEncoder(EncoderSpec spec) : spec_(std::move(spec)) {
  spec_.id = "placeholder-hash-v1";
  spec_.vae_id = "placeholder";
  spec_.text_encoder_id = "placeholder";
  spec_.text_encoder_2_id = spec_.text_encoder_2_id.empty() ? "" : "placeholder";
  if (spec_.latent_shape.size() != 3) throw std::invalid_argument("PlaceholderEncoder: latent_shape must be C, h, w");
}

EncoderSpec PlaceholderEncoder::sd15() {
  EncoderSpec s;
  s.backbone_family = "sd15";
  s.latent_shape = {4, 64, 64};
  s.latent_scale_factor = 0.18215;
  s.embed_tokens = 77;
  s.embed_dim = 768;
  s.latent_std = true;
  return s;
}

EncoderSpec PlaceholderEncoder::sdxl() {
  EncoderSpec s;
  s.backbone_family = "sdxl";
  s.latent_shape = {4, 128, 128};
  s.latent_scale_factor = 0.13025;
  s.text_encoder_2_id = "placeholder";
  s.embed_tokens = 77;
  s.embed_dim = 2048;
  s.pooled_dim = 1280;
  s.time_ids = true;
  s.latent_std = true;
  return s;
}

EncoderSpec PlaceholderEncoder::tiny() {
  EncoderSpec s;
  s.backbone_family = "tiny";
  s.latent_shape = {4, 8, 8};
  s.latent_scale_factor = 0.18215;
  s.embed_tokens = 77;
  s.embed_dim = 32;
  s.latent_std = true;
  return s;
}

EncoderSpec PlaceholderEncoder::by_name(const std::string& family) {
  if (family == "sd15") return sd15();
  if (family == "sdxl") return sdxl();
  if (family == "tiny") return tiny();
  throw std::invalid_argument("placeholder encoder: unknown backbone family '" + family + "'; choose sd15, sdxl or tiny");
}

void PlaceholderEncoder::encode_image(const ImageRef& image, uint16_t* mean, uint16_t* std_dev, float* time_ids) {
  const size_t n = static_cast<size_t>(spec_.latent_shape[0] * spec_.latent_shape[1] * spec_.latent_shape[2]);
  const uint64_t key = stable_id({"placeholder-image", image.key()});
  normals(key, n, 1.0f, 0.0f, mean);
  if (std_dev != nullptr)
    for (size_t k = 0; k < n; ++k) std_dev[k] = float_to_half(0.05f);
  if (time_ids != nullptr) {
    const float side = static_cast<float>(spec_.latent_shape[1] * 8);  // VAE downsampling factor 8
    const float values[6] = {side, side, 0.0f, 0.0f, side, side};
    for (int k = 0; k < 6; ++k) time_ids[k] = values[k];
  }
}

void PlaceholderEncoder::encode_prompt(const std::string& text, uint16_t* embeds, uint16_t* pooled) {
  const uint64_t key = stable_id({"placeholder-text", text});
  normals(key, static_cast<size_t>(spec_.embed_tokens * spec_.embed_dim), 0.5f, 0.0f, embeds);
  if (pooled != nullptr) normals(key ^ 0x706f6f6c6564ull, static_cast<size_t>(spec_.pooled_dim), 0.5f, 0.0f, pooled);
}

}  // namespace prefdiff::data
