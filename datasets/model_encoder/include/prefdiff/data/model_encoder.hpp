// The real encoder of `prefdiff data import`: the VAE and CLIP text encoders of a diffusers model folder
// behind the importers' PairEncoder interface.
//   images:  decoded and preprocessed on worker threads as the official Diffusion-DPO script does (short
//            side resized to the resolution, bilinear antialiased; centre crop; no flip, since a stored
//            latent cannot be flipped later), then encoded a batch at a time: the VAE posterior mean times the
//            config's latent normalisation (scaling_factor, as diffusers' training scripts), the posterior
//            std scaled alike when asked, and SDXL's time ids (original size, crop offsets, target size);
//   prompts: tokenized with the folder's tokenizer/ (and tokenizer_2/), padded and truncated to 77 tokens
//            (a cut caption is reported), SD1.5: text_encoder's last hidden state; SDXL: diffusers'
//            encode_prompt (both encoders' penultimate hidden states concatenated, text_encoder_2's
//            projected pooled output).
// The shard attributes identify the weights: `vae_id` / `text_encoder_id(s)` are "<implementation>:
// <model folder name>/<component>:<content hash of its config, weights and tokenizer files>", so a recipe
// or a resumed import that expects other weights refuses the shard (model_component_id computes the id a
// recipe would expect without loading the model).
// LibTorch stays in the .cpp: this header is included by the torch-free data commands.
#ifndef PREFDIFF_DATA_MODEL_ENCODER_HPP
#define PREFDIFF_DATA_MODEL_ENCODER_HPP

#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "prefdiff/data/encoder.hpp"

namespace prefdiff::data {

// A model folder that cannot be used; what() names the folder, the file and, for weights, the tensor.
class ModelFolderError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelEncoderOptions {
  std::string device = "auto";  // "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N"
  int32_t resolution = 0;       // image side; 0: the VAE config's sample_size (SD1.5 512, SDXL 1024)
  bool latent_std = false;      // also store the posterior std
  int32_t decode_threads = 0;   // image decoding workers; 0: hardware threads
  int64_t vae_batch = 8;        // images per VAE call (bounds activation memory)
  int64_t text_batch = 64;      // captions per text-encoder call
};

// The implementation names recorded in the shard attributes.
inline constexpr const char* kModelEncoderId = "prefdiff-model-encoder-v1";

class ModelEncoder final : public PairEncoder {
 public:
  // `folder`: a diffusers pipeline folder with vae/, text_encoder/, tokenizer/ and, for SDXL, text_encoder_2/
  // and tokenizer_2/. Throws ModelFolderError.
  ModelEncoder(const std::filesystem::path& folder, const ModelEncoderOptions& options = {});
  ~ModelEncoder() override;

  const EncoderSpec& spec() const override;
  std::string device_name() const;

  void encode_images(const std::vector<ImageRef>& images, uint16_t* means, uint16_t* stds, float* time_ids,
                     std::vector<std::optional<ImageFailure>>& failures) override;
  std::vector<bool> encode_prompts(const std::vector<std::string>& texts, uint16_t* embeds, uint16_t* pooled) override;
  // Single items (throw ModelFolderError / the decode error for an unreadable image).
  void encode_image(const ImageRef& image, uint16_t* mean, uint16_t* std_dev, float* time_ids) override;
  void encode_prompt(const std::string& text, uint16_t* embeds, uint16_t* pooled) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "<implementation>:<folder name>/<component>:<hash>" for a component of a model folder: the hash covers
// <component>/config.json, its *.safetensors weights and, when given, the tokenizer folder's files
// (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json). Torch-free.
std::string model_component_id(const std::filesystem::path& folder, const std::string& implementation, const std::string& component,
                               const std::string& tokenizer = "");
// A 128-bit content hash (not cryptographic: it identifies weights, it does not authenticate them) of the
// files' bytes in the given order, as 32 hex digits. Throws ModelFolderError naming an unreadable file.
std::string content_hash(const std::vector<std::filesystem::path>& files);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_MODEL_ENCODER_HPP
