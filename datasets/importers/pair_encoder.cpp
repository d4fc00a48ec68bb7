// The batched calls' default: one image or caption at a time through the single-item calls.
#include "prefdiff/data/encoder.hpp"

namespace prefdiff::data {

void PairEncoder::encode_images(const std::vector<ImageRef>& images, uint16_t* means, uint16_t* stds, float* time_ids,
                                std::vector<std::optional<ImageFailure>>& failures) {
  const EncoderSpec& s = spec();
  const size_t n = static_cast<size_t>(s.latent_shape[0] * s.latent_shape[1] * s.latent_shape[2]);
  failures.assign(images.size(), std::nullopt);
  for (size_t k = 0; k < images.size(); ++k)
    encode_image(images[k], means + k * n, stds != nullptr ? stds + k * n : nullptr, time_ids != nullptr ? time_ids + 6 * k : nullptr);
}

std::vector<bool> PairEncoder::encode_prompts(const std::vector<std::string>& texts, uint16_t* embeds, uint16_t* pooled) {
  const EncoderSpec& s = spec();
  const size_t n = static_cast<size_t>(s.embed_tokens * s.embed_dim), p = static_cast<size_t>(s.pooled_dim);
  for (size_t k = 0; k < texts.size(); ++k) encode_prompt(texts[k], embeds + k * n, pooled != nullptr ? pooled + k * p : nullptr);
  return std::vector<bool>(texts.size(), false);
}

}  // namespace prefdiff::data
