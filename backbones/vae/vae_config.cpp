// vae/config.json -> AutoencoderKlConfig, following diffusers' AutoencoderKL.__init__ defaults.
#include "vae/vae_config.hpp"

namespace prefdiff::vae {

AutoencoderKlConfig AutoencoderKlConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  model_folder::ConfigReader r(j, origin);
  AutoencoderKlConfig c;
  if (const auto* cls = r.find("_class_name"); cls && *cls != "AutoencoderKL")
    r.problem("_class_name", "is " + cls->dump() + ", expected \"AutoencoderKL\" (prefdiff reads only KL autoencoders)");
  c.in_channels = r.integer("in_channels", 1);
  c.out_channels = r.integer("out_channels", 1);
  c.block_out_channels = r.integers("block_out_channels", 1);
  c.layers_per_block = r.integer("layers_per_block", 1);
  c.latent_channels = r.integer("latent_channels", 1);
  c.norm_num_groups = r.integer("norm_num_groups", 1);
  c.scaling_factor = r.number_or("scaling_factor", 0.18215);  // SD1.5's first vae/config.json lacks it
  const size_t n = c.block_out_channels.size();
  const auto down = r.strings("down_block_types");
  const auto up = r.strings("up_block_types");
  for (const auto& s : down)
    if (s != "DownEncoderBlock2D") r.problem("down_block_types", "contains \"" + s + "\"; supported: \"DownEncoderBlock2D\"");
  for (const auto& s : up)
    if (s != "UpDecoderBlock2D") r.problem("up_block_types", "contains \"" + s + "\"; supported: \"UpDecoderBlock2D\"");
  if (n && !down.empty() && down.size() != n)
    r.problem("down_block_types", "has " + std::to_string(down.size()) + " entries but block_out_channels has " + std::to_string(n));
  if (n && !up.empty() && up.size() != n)
    r.problem("up_block_types", "has " + std::to_string(up.size()) + " entries but block_out_channels has " + std::to_string(n));
  r.choice("act_fn", "silu", {"silu"});
  c.mid_block_add_attention = r.boolean_or("mid_block_add_attention", true);
  c.use_quant_conv = r.boolean_or("use_quant_conv", true);
  c.use_post_quant_conv = r.boolean_or("use_post_quant_conv", true);
  c.force_upcast = r.boolean_or("force_upcast", true);
  if (r.has("shift_factor")) c.shift_factor = r.number("shift_factor");
  c.latents_mean = r.numbers_opt("latents_mean");
  c.latents_std = r.numbers_opt("latents_std");
  if (c.latents_mean.has_value() != c.latents_std.has_value())
    r.problem(c.latents_mean ? "latents_std" : "latents_mean", "is missing: latents_mean and latents_std come together");
  for (const char* key : {"latents_mean", "latents_std"}) {
    const auto& v = std::string(key) == "latents_mean" ? c.latents_mean : c.latents_std;
    if (v && static_cast<int64_t>(v->size()) != c.latent_channels)
      r.problem(key, "has " + std::to_string(v->size()) + " entries but latent_channels is " + std::to_string(c.latent_channels));
  }
  if (c.latents_std)
    for (double s : *c.latents_std)
      if (!(s > 0)) r.problem("latents_std", "must be positive");
  if (c.latents_mean && c.shift_factor)
    r.problem("shift_factor", "is set together with latents_mean/latents_std; prefdiff applies one normalisation, not both");
  if (!(c.scaling_factor > 0)) r.problem("scaling_factor", "must be positive");
  for (size_t i = 0; i < n; ++i)
    if (c.norm_num_groups > 0 && c.block_out_channels[i] % c.norm_num_groups != 0)
      r.problem("block_out_channels", "entry " + std::to_string(i) + " (" + std::to_string(c.block_out_channels[i]) +
                                          ") is not divisible by norm_num_groups = " + std::to_string(c.norm_num_groups));
  r.finish("the VAE config (diffusers AutoencoderKL)",
           "prefdiff builds diffusers' AutoencoderKL (SD1.5 / SDXL VAEs); see docs/backbones.md, section \"VAE\".");
  return c;
}

}  // namespace prefdiff::vae
