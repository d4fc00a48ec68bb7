#include "prefdiff/data/model_encoder.hpp"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/cuda.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "clip/clip_loading.hpp"
#include "clip/prompt_embeds.hpp"
#include "image/decode.hpp"
#include "image/parallel_decode.hpp"
#include "image/preprocess.hpp"
#include "tokenizer/clip_tokenizer.hpp"
#include "vae/autoencoder_kl.hpp"

namespace prefdiff::data {

namespace fs = std::filesystem;

namespace {

c10::Device pick_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  try {
    c10::Device device(name);
    if (device.is_cuda() && !torch::cuda::is_available())
      throw ModelFolderError("--device " + name + ": no CUDA device is available to this process. HINT: use --device cpu or auto");
    return device;
  } catch (const c10::Error&) {
    throw ModelFolderError("--device '" + name + "' is not a device; use auto, cpu, cuda or cuda:N");
  }
}

// The VAE config's sample_size (an int, or [h, w] with equal sides), or 0.
int32_t vae_sample_size(const fs::path& folder) {
  std::ifstream in(folder / "vae" / "config.json");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("sample_size")) return 0;
  const nlohmann::json& s = j["sample_size"];
  if (s.is_number_integer()) return s.get<int32_t>();
  if (s.is_array() && s.size() == 2 && s[0].is_number_integer() && s[0] == s[1]) return s[0].get<int32_t>();
  return 0;
}

// Runs a loader; any error becomes a ModelFolderError that says which component of which folder failed.
template <class Load>
auto load_component(const fs::path& folder, const std::string& component, Load&& load) -> decltype(load()) {
  if (!fs::is_directory(folder / component))
    throw ModelFolderError("model folder " + folder.string() + " has no " + component + "/ folder. HINT: --model takes a diffusers " +
                           "pipeline folder (vae/, text_encoder/, tokenizer/, and for SDXL text_encoder_2/, tokenizer_2/), "
                           "e.g. a download of stable-diffusion-v1-5");
  try {
    return load();
  } catch (const ModelFolderError&) {
    throw;
  } catch (const std::exception& e) {
    throw ModelFolderError("model folder " + folder.string() + ", " + component + "/: " + e.what());
  }
}

// f32 tensor -> f16 bits, row-major, into `out`.
void copy_half(const at::Tensor& t, uint16_t* out) {
  const at::Tensor h = t.to(c10::kCPU).to(c10::kHalf).contiguous();
  std::memcpy(out, h.data_ptr(), static_cast<size_t>(h.numel()) * sizeof(uint16_t));
}

struct Prepared {
  image::TrainingImage image;
  std::optional<ImageFailure> failure;
};

}  // namespace

struct ModelEncoder::Impl {
  fs::path folder;
  ModelEncoderOptions options;
  c10::Device device = c10::Device(c10::kCPU);
  EncoderSpec spec;
  vae::AutoencoderKL vae{nullptr};
  clip::ClipTextModel text_encoder{nullptr}, text_encoder_2{nullptr};
  std::optional<tokenizer::ClipTokenizer> tokenizer, tokenizer_2;
  int32_t resolution = 0;

  Prepared prepare(const ImageRef& ref) const {
    Prepared out;
    image::DecodeResult decoded;
    if (ref.bytes != nullptr) {
      decoded = image::try_decode_image_bytes(ref.bytes, ref.size, ref.path.empty() ? ref.key() : ref.path);
    } else if (ref.path.empty()) {
      out.failure = ImageFailure{ref.key(), "missing",
                                 "image '" + ref.key() + "': the source names no file and holds no bytes for it. HINT: for Pick-a-Pic "
                                 "import the parquet files (they carry the JPEG bytes), or give rows an image_0_path/image_1_path"};
      return out;
    } else {
      decoded = image::try_decode_image(ref.path);
    }
    if (!decoded.ok()) {
      out.failure = ImageFailure{ref.key(), image::error_kind_name(decoded.error.kind), decoded.error.message};
      return out;
    }
    image::TrainingPreprocessOptions pre;
    pre.resolution = resolution;
    pre.random_crop = false;
    pre.random_flip = false;
    out.image = image::preprocess_for_training(decoded.image->image, pre, 0);
    return out;
  }
};

ModelEncoder::ModelEncoder(const fs::path& folder, const ModelEncoderOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.folder = folder;
  s.options = options;
  if (!fs::is_directory(folder))
    throw ModelFolderError("model folder " + folder.string() + " does not exist or is not a folder. HINT: --model takes a diffusers "
                           "pipeline folder, e.g. a download of stable-diffusion-v1-5");
  s.device = pick_device(options.device);
  const bool sdxl = fs::exists(folder / "text_encoder_2");

  vae::VaeOptions vae_options;
  vae_options.device = s.device;
  vae_options.slice_size = options.vae_batch;
  s.vae = load_component(folder, "vae", [&] { return vae::load_autoencoder_kl(folder / "vae", vae_options); });
  clip::ClipLoadOptions clip_options;
  clip_options.device = s.device;
  s.text_encoder = load_component(folder, "text_encoder", [&] { return clip::load_clip_text_model(folder, clip_options, "text_encoder"); });
  s.tokenizer.emplace(load_component(folder, "tokenizer", [&] { return tokenizer::ClipTokenizer::from_folder(folder / "tokenizer"); }));
  if (sdxl) {
    s.text_encoder_2 = load_component(folder, "text_encoder_2",
                                      [&] { return clip::load_clip_text_model(folder, clip_options, "text_encoder_2", true); });
    s.tokenizer_2.emplace(
        load_component(folder, "tokenizer_2", [&] { return tokenizer::ClipTokenizer::from_folder(folder / "tokenizer_2"); }));
  }

  const int32_t sample = vae_sample_size(folder);
  s.resolution = options.resolution > 0 ? options.resolution : (sample > 0 ? sample : 512);
  const int64_t down = s.vae->config().downscale_factor();
  if (s.resolution % down != 0)
    throw ModelFolderError("resolution " + std::to_string(s.resolution) + " is not a multiple of the VAE's downsampling factor " +
                           std::to_string(down) + " (" + (folder / "vae" / "config.json").string() + "). HINT: choose --resolution " +
                           std::to_string((s.resolution / down + 1) * down));

  EncoderSpec& spec = s.spec;
  spec.id = kModelEncoderId;
  spec.backbone_family = sdxl ? "sdxl" : "sd15";
  spec.latent_shape = {s.vae->config().latent_channels, s.resolution / down, s.resolution / down};
  spec.latent_scale_factor = s.vae->config().scaling_factor;
  spec.vae_id = model_component_id(folder, "AutoencoderKL", "vae");
  spec.text_encoder_id = model_component_id(folder, "CLIPTextModel", "text_encoder", "tokenizer");
  const int32_t tokens = s.tokenizer->model_max_length();
  spec.embed_tokens = tokens;
  spec.embed_dim = s.text_encoder->config().hidden_size;
  if (sdxl) {
    spec.text_encoder_2_id = model_component_id(folder, "CLIPTextModelWithProjection", "text_encoder_2", "tokenizer_2");
    spec.embed_dim += s.text_encoder_2->config().hidden_size;
    spec.pooled_dim = s.text_encoder_2->text_projection->weight.size(0);
    spec.time_ids = true;
    if (s.tokenizer_2->model_max_length() != tokens)
      throw ModelFolderError("model folder " + folder.string() + ": tokenizer/ and tokenizer_2/ have different model_max_length (" +
                             std::to_string(tokens) + " and " + std::to_string(s.tokenizer_2->model_max_length()) +
                             "); SDXL's prompt embedding needs the same sequence length");
  }
  spec.latent_std = options.latent_std;
  spec.reads_pixels = true;
}

ModelEncoder::~ModelEncoder() = default;

const EncoderSpec& ModelEncoder::spec() const { return impl_->spec; }
std::string ModelEncoder::device_name() const { return impl_->device.str(); }

void ModelEncoder::encode_images(const std::vector<ImageRef>& images, uint16_t* means, uint16_t* stds, float* time_ids,
                                 std::vector<std::optional<ImageFailure>>& failures) {
  Impl& s = *impl_;
  const int64_t n = static_cast<int64_t>(images.size());
  const int64_t r = s.resolution;
  const size_t latent = static_cast<size_t>(s.spec.latent_shape[0] * s.spec.latent_shape[1] * s.spec.latent_shape[2]);
  failures.assign(images.size(), std::nullopt);
  // Decode and preprocess on worker threads into one pinned batch; unreadable images are left out of it.
  at::Tensor pixels = at::empty({n, 3, r, r}, at::kFloat);
  std::vector<int64_t> rows;  // image index of each batch row
  int threads = s.options.decode_threads > 0 ? s.options.decode_threads : static_cast<int>(std::thread::hardware_concurrency());
  image::for_each_in_order<Prepared>(
      images.size(), std::max(1, threads), [&](size_t k) { return s.prepare(images[k]); },
      [&](size_t k, Prepared&& p) {
        if (p.failure) {
          failures[k] = std::move(p.failure);
          return;
        }
        const int64_t row = static_cast<int64_t>(rows.size());
        std::memcpy(pixels[row].data_ptr<float>(), p.image.pixels.data(), p.image.pixels.size() * sizeof(float));
        if (time_ids != nullptr) {
          const std::array<float, 6> ids = p.image.time_ids.as_array();
          std::copy(ids.begin(), ids.end(), time_ids + 6 * k);
        }
        rows.push_back(static_cast<int64_t>(k));
      });
  if (rows.empty()) return;
  c10::InferenceMode guard;
  const int64_t step = std::max<int64_t>(1, s.options.vae_batch);
  for (int64_t first = 0; first < static_cast<int64_t>(rows.size()); first += step) {
    const int64_t count = std::min<int64_t>(step, static_cast<int64_t>(rows.size()) - first);
    const at::Tensor batch = pixels.narrow(0, first, count).to(s.device);
    const vae::LatentDistribution posterior = s.vae->encode(batch);
    const at::Tensor mean = s.vae->scale_latents(posterior.mean).to(at::kFloat);
    // The normalisation is affine; the std scales by its linear part only.
    at::Tensor std_dev;
    if (stds != nullptr) std_dev = (s.vae->scale_latents(posterior.std) - s.vae->scale_latents(at::zeros_like(posterior.std))).to(at::kFloat);
    for (int64_t b = 0; b < count; ++b) {
      const size_t k = static_cast<size_t>(rows[static_cast<size_t>(first + b)]);
      copy_half(mean[b], means + k * latent);
      if (stds != nullptr) copy_half(std_dev[b], stds + k * latent);
    }
  }
}

std::vector<bool> ModelEncoder::encode_prompts(const std::vector<std::string>& texts, uint16_t* embeds, uint16_t* pooled) {
  Impl& s = *impl_;
  std::vector<bool> truncated(texts.size(), false);
  const int32_t tokens = static_cast<int32_t>(s.spec.embed_tokens);
  const size_t row = static_cast<size_t>(s.spec.embed_tokens * s.spec.embed_dim);
  auto ids_of = [&](const tokenizer::ClipTokenizer& tok, const std::vector<std::string>& batch) {
    tokenizer::EncodedBatch encoded = tok.encode_batch(batch, tokenizer::Padding::max_length, tokens);
    at::Tensor ids = at::empty({static_cast<int64_t>(batch.size()), tokens}, at::kLong);
    auto a = ids.accessor<int64_t, 2>();
    for (size_t b = 0; b < batch.size(); ++b)
      for (int32_t t = 0; t < tokens; ++t) a[static_cast<int64_t>(b)][t] = encoded.rows[b].ids[static_cast<size_t>(t)];
    std::vector<bool> cut(batch.size());
    for (size_t b = 0; b < batch.size(); ++b) cut[b] = encoded.rows[b].truncated;
    return std::make_pair(ids.to(s.device), cut);
  };
  c10::InferenceMode guard;
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, s.options.text_batch));
  for (size_t first = 0; first < texts.size(); first += step) {
    const std::vector<std::string> batch(texts.begin() + first, texts.begin() + std::min(texts.size(), first + step));
    auto [ids, cut] = ids_of(*s.tokenizer, batch);
    at::Tensor hidden, pooled_out;
    if (s.text_encoder_2) {
      auto [ids_2, cut_2] = ids_of(*s.tokenizer_2, batch);
      for (size_t b = 0; b < batch.size(); ++b) cut[b] = cut[b] || cut_2[b];
      clip::SdxlPromptEmbeds e = clip::sdxl_prompt_embeds(&s.text_encoder, s.text_encoder_2, ids, ids_2);
      hidden = e.prompt_embeds;
      pooled_out = e.pooled_prompt_embeds;
    } else {
      hidden = clip::sd15_prompt_embeds(s.text_encoder, ids);
    }
    for (size_t b = 0; b < batch.size(); ++b) {
      copy_half(hidden[static_cast<int64_t>(b)], embeds + (first + b) * row);
      if (pooled != nullptr && pooled_out.defined())
        copy_half(pooled_out[static_cast<int64_t>(b)], pooled + (first + b) * static_cast<size_t>(s.spec.pooled_dim));
      truncated[first + b] = cut[b];
    }
  }
  return truncated;
}

void ModelEncoder::encode_image(const ImageRef& image, uint16_t* mean, uint16_t* std_dev, float* time_ids) {
  std::vector<std::optional<ImageFailure>> failures;
  encode_images({image}, mean, std_dev, time_ids, failures);
  if (failures[0]) throw ModelFolderError(failures[0]->message);
}

void ModelEncoder::encode_prompt(const std::string& text, uint16_t* embeds, uint16_t* pooled) { encode_prompts({text}, embeds, pooled); }

}  // namespace prefdiff::data
