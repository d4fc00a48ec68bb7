#include "vae/autoencoder_kl.hpp"

#include <ATen/ATen.h>

#include <cstring>
#include <sstream>

#include "model_folder/mapped_load.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"

namespace prefdiff::vae {

LatentDistribution LatentDistribution::from_moments(const at::Tensor& moments) {
  auto parts = moments.chunk(2, 1);
  LatentDistribution d;
  d.mean = parts[0];
  d.logvar = parts[1].clamp(-30.0, 20.0);
  d.std = at::exp(0.5 * d.logvar);
  return d;
}

at::Tensor LatentDistribution::sample(std::optional<at::Generator> generator) const {
  return mean + std * at::randn(mean.sizes(), generator, mean.options());
}

c10::ScalarType compute_dtype(const AutoencoderKlConfig& config, c10::ScalarType requested) {
  const bool half = requested == at::kHalf || requested == at::kBFloat16;
  return half && config.force_upcast ? at::kFloat : requested;
}

AutoencoderKLImpl::AutoencoderKLImpl(AutoencoderKlConfig config, const at::TensorOptions& opts)
    : config_(std::move(config)) {
  const int64_t lat = config_.latent_channels;
  encoder = register_module("encoder", VaeEncoder(config_, opts));
  decoder = register_module("decoder", VaeDecoder(config_, opts));
  if (config_.use_quant_conv) quant_conv = register_module("quant_conv", Conv2d(2 * lat, 2 * lat, 1, 1, 0, opts));
  if (config_.use_post_quant_conv) post_quant_conv = register_module("post_quant_conv", Conv2d(lat, lat, 1, 1, 0, opts));
}

void AutoencoderKLImpl::set_slice_size(int64_t n) {
  if (n < 0) throw std::invalid_argument("vae: slice size must be >= 0 (0 = whole batch), got " + std::to_string(n));
  slice_size_ = n;
}

namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

// Runs fn on batch slices of at most n rows and concatenates outputs and taps (n == 0: one call).
template <class Fn>
at::Tensor sliced(const at::Tensor& x, int64_t n, Taps* taps, Fn fn) {
  if (n == 0 || x.size(0) <= n) return fn(x, taps);
  std::vector<at::Tensor> outs;
  std::map<std::string, std::vector<at::Tensor>> tap_parts;
  for (const at::Tensor& part : x.split(n, 0)) {
    Taps local;
    outs.push_back(fn(part, taps ? &local : nullptr));
    for (auto& [k, v] : local) tap_parts[k].push_back(v);
  }
  if (taps)
    for (auto& [k, v] : tap_parts) (*taps)[k] = at::cat(v, 0);
  return at::cat(outs, 0);
}

}  // namespace

at::Tensor AutoencoderKLImpl::encode_moments(const at::Tensor& images, Taps* taps) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != config_.in_channels)
    throw std::invalid_argument("vae: images must be [B," + std::to_string(config_.in_channels) + ",H,W], got " +
                                (images.defined() ? shape_of(images) : std::string("undefined")));
  const at::Tensor x = images.to(device(), dtype());
  return sliced(x, slice_size_, taps, [&](const at::Tensor& part, Taps* t) {
    at::Tensor h = encoder->forward(part, t);
    if (quant_conv) {
      h = quant_conv->forward(h);
      if (t) (*t)["quant_conv"] = h;
    }
    return h;
  });
}

at::Tensor AutoencoderKLImpl::decode_raw(const at::Tensor& latents, Taps* taps) {
  if (!latents.defined() || latents.dim() != 4 || latents.size(1) != config_.latent_channels)
    throw std::invalid_argument("vae: latents must be [B," + std::to_string(config_.latent_channels) + ",h,w], got " +
                                (latents.defined() ? shape_of(latents) : std::string("undefined")));
  const at::Tensor z = latents.to(device(), dtype());
  return sliced(z, slice_size_, taps, [&](const at::Tensor& part, Taps* t) {
    at::Tensor h = part;
    if (post_quant_conv) {
      h = post_quant_conv->forward(h);
      if (t) (*t)["post_quant_conv"] = h;
    }
    return decoder->forward(h, t);
  });
}

LatentDistribution AutoencoderKLImpl::encode(const at::Tensor& images, Taps* taps) {
  return LatentDistribution::from_moments(encode_moments(images, taps));
}

at::Tensor AutoencoderKLImpl::decode(const at::Tensor& latents, Taps* taps) { return decode_raw(latents, taps); }

at::Tensor AutoencoderKLImpl::forward(const at::Tensor& images, bool sample_posterior,
                                      std::optional<at::Generator> generator) {
  LatentDistribution posterior = encode(images);
  return decode(sample_posterior ? posterior.sample(generator) : posterior.mode());
}

at::Tensor AutoencoderKLImpl::channel_vector(const std::vector<double>& v, const at::Tensor& like) const {
  return at::tensor(v, like.options().dtype(at::kDouble)).to(like.scalar_type()).view({1, -1, 1, 1});
}

at::Tensor AutoencoderKLImpl::scale_latents(const at::Tensor& z) const {
  const double sf = config_.scaling_factor;
  if (config_.latents_mean)
    return (z - channel_vector(*config_.latents_mean, z)) * sf / channel_vector(*config_.latents_std, z);
  return config_.shift_factor ? (z - *config_.shift_factor) * sf : z * sf;
}

at::Tensor AutoencoderKLImpl::unscale_latents(const at::Tensor& s) const {
  const double sf = config_.scaling_factor;
  if (config_.latents_mean)
    return s * channel_vector(*config_.latents_std, s) / sf + channel_vector(*config_.latents_mean, s);
  return config_.shift_factor ? s / sf + *config_.shift_factor : s / sf;
}

at::Tensor AutoencoderKLImpl::encode_scaled(const at::Tensor& images, bool sample, std::optional<at::Generator> generator) {
  LatentDistribution posterior = encode(images);
  return scale_latents(sample ? posterior.sample(generator) : posterior.mode());
}

at::Tensor AutoencoderKLImpl::decode_scaled(const at::Tensor& scaled_latents) {
  return decode(unscale_latents(scaled_latents.to(device(), dtype())));
}

AutoencoderKL load_autoencoder_kl(const std::filesystem::path& folder, const VaeOptions& options) {
  const auto dir = model_io::resolve_model_dir(folder, "vae");
  const auto config_path = dir / "config.json";
  AutoencoderKlConfig cfg = AutoencoderKlConfig::from_json(model_io::read_json_file(config_path), config_path.string());
  const auto opts = at::TensorOptions().device(options.device).dtype(compute_dtype(cfg, options.dtype));
  AutoencoderKL vae(cfg, opts);
  vae->set_slice_size(options.slice_size);

  const auto files = model_folder::WeightFiles::open_folder(dir, "diffusion_pytorch_model", options.variant);
  model_folder::KeyMap map;
  // diffusers before 0.14 named the VAE attention query/key/value/proj_attn; diffusers renames them on load.
  map.source = [&files](const std::string& name) {
    static const std::pair<const char*, const char*> kOld[] = {
        {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};
    if (name.find(".attentions.") != std::string::npos && !files.contains(name))
      for (const auto& [now, old] : kOld)
        if (auto at = name.find(now); at != std::string::npos) {
          std::string legacy = name.substr(0, at) + old + name.substr(at + std::strlen(now));
          if (files.contains(legacy)) return model_folder::TensorSource::copy(legacy);
        }
    return model_folder::TensorSource::copy(name);
  };
  model_io::NamedTensors targets;
  for (const auto& item : vae->named_parameters(true)) targets.emplace_back(item.key(), item.value());
  model_folder::load_mapped(targets, files, map, "the VAE (" + config_path.string() + ")",
                            "the weights do not belong to this config.json (wrong folder, variant or model type?).");
  vae->eval();
  return vae;
}

}  // namespace prefdiff::vae
