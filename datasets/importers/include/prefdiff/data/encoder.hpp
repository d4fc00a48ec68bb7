// The encoder interface of the importers: turns an image into its VAE latent and a caption into its
// text-encoder outputs. Real encoders (VAE, CLIP text encoders) plug in here when they exist; until then
// PlaceholderEncoder fills shards with deterministic stand-in values so the pair structure, the reader and
// training can be exercised. A shard always records which encoder produced it (attribute `encoder`).
#ifndef PREFDIFF_DATA_ENCODER_HPP
#define PREFDIFF_DATA_ENCODER_HPP

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace prefdiff::data {

// What an encoder produces; written into the shard attributes and layout.
struct EncoderSpec {
  std::string id;                     // the implementation, e.g. "placeholder-hash-v1"
  std::string backbone_family;        // "sd15", "sdxl", ...
  std::vector<int64_t> latent_shape;  // C, h, w
  double latent_scale_factor = 0.0;
  std::string vae_id;
  std::string text_encoder_id;
  std::string text_encoder_2_id;      // empty with one text encoder
  int64_t embed_tokens = 77;
  int64_t embed_dim = 768;
  int64_t pooled_dim = 0;             // 0: no pooled embedding
  bool time_ids = false;              // SDXL micro-conditioning
  bool latent_std = false;            // also produces the VAE posterior std
};

// An image as a source data set names it: a path (relative to an images root) and/or a uid, and its
// encoded bytes when the source embeds them (Pick-a-Pic parquet).
struct ImageRef {
  std::string path;
  std::string uid;
  const uint8_t* bytes = nullptr;
  size_t size = 0;
  // The key used for caching and hashing: the uid when there is one, else the path.
  const std::string& key() const { return uid.empty() ? path : uid; }
};

class PairEncoder {
 public:
  virtual ~PairEncoder() = default;
  virtual const EncoderSpec& spec() const = 0;
  // Writes the latent mean (times the scale factor), C*h*w f16; the std when spec().latent_std (else
  // `std_dev` is null); and 6 time ids (orig_h, orig_w, crop_top, crop_left, target_h, target_w) when
  // spec().time_ids (else `time_ids` is null).
  virtual void encode_image(const ImageRef& image, uint16_t* mean, uint16_t* std_dev, float* time_ids) = 0;
  // Writes the hidden states, tokens*dim f16, and the pooled embedding when spec().pooled_dim > 0.
  virtual void encode_prompt(const std::string& text, uint16_t* embeds, uint16_t* pooled) = 0;
};

// NOT A MODEL. Deterministic pseudo-random values hashed from the image key or the caption (standard
// normal latents, std 0.05, small embeddings), so tests and plumbing runs are reproducible without any
// weights. Its shards say encoder = "placeholder-hash-v1" and vae_id / text_encoder_id = "placeholder".
class PlaceholderEncoder final : public PairEncoder {
 public:
  explicit PlaceholderEncoder(EncoderSpec spec);
  // Shapes of the real families: SD1.5 (4x64x64 latents, 77x768 text) and SDXL (4x128x128, 77x2048,
  // pooled 1280, time ids), and a tiny one for fast tests (4x8x8, 77x32).
  static EncoderSpec sd15();
  static EncoderSpec sdxl();
  static EncoderSpec tiny();
  static EncoderSpec by_name(const std::string& family);  // "sd15" | "sdxl" | "tiny"

  const EncoderSpec& spec() const override { return spec_; }
  void encode_image(const ImageRef& image, uint16_t* mean, uint16_t* std_dev, float* time_ids) override;
  void encode_prompt(const std::string& text, uint16_t* embeds, uint16_t* pooled) override;

 private:
  EncoderSpec spec_;
};

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_ENCODER_HPP
