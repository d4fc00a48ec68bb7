#include "vae/vae_coders.hpp"

#include <ATen/ATen.h>

namespace prefdiff::vae {

namespace {
void tap(Taps* taps, const std::string& name, const at::Tensor& t) {
  if (taps) (*taps)[name] = t;
}
}  // namespace

VaeEncoderImpl::VaeEncoderImpl(const AutoencoderKlConfig& c, const at::TensorOptions& opts) {
  const auto& boc = c.block_out_channels;
  const int64_t groups = c.norm_num_groups;
  conv_in = register_module("conv_in", Conv2d(c.in_channels, boc[0], 3, 1, 1, opts));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  int64_t out = boc[0];
  for (size_t i = 0; i < boc.size(); ++i) {
    const int64_t in = out;
    out = boc[i];
    down_.push_back(DownEncoderBlock(in, out, c.layers_per_block, groups, i + 1 < boc.size(), opts));
    down_blocks->push_back(down_.back());
  }
  mid_block = register_module("mid_block", VaeMidBlock(boc.back(), groups, c.mid_block_add_attention, opts));
  conv_norm_out = register_module("conv_norm_out", GroupNorm(groups, boc.back(), 1e-6, opts));
  conv_out = register_module("conv_out", Conv2d(boc.back(), 2 * c.latent_channels, 3, 1, 1, opts));
}

at::Tensor VaeEncoderImpl::forward(const at::Tensor& images, Taps* taps) {
  at::Tensor h = conv_in->forward(images);
  tap(taps, "encoder.conv_in", h);
  for (size_t i = 0; i < down_.size(); ++i) {
    h = down_[i]->forward(h);
    tap(taps, "encoder.down_blocks." + std::to_string(i), h);
  }
  h = mid_block->forward(h);
  tap(taps, "encoder.mid_block", h);
  h = conv_out->forward(silu_fresh(conv_norm_out->forward(h)));
  tap(taps, "encoder.conv_out", h);
  return h;
}

VaeDecoderImpl::VaeDecoderImpl(const AutoencoderKlConfig& c, const at::TensorOptions& opts) {
  const auto& boc = c.block_out_channels;
  const int64_t groups = c.norm_num_groups;
  conv_in = register_module("conv_in", Conv2d(c.latent_channels, boc.back(), 3, 1, 1, opts));
  // diffusers registers up_blocks (empty) before mid_block; the order only matters for named_parameters().
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  mid_block = register_module("mid_block", VaeMidBlock(boc.back(), groups, c.mid_block_add_attention, opts));
  std::vector<int64_t> rev(boc.rbegin(), boc.rend());
  int64_t out = rev[0];
  for (size_t i = 0; i < rev.size(); ++i) {
    const int64_t prev = out;
    out = rev[i];
    up_.push_back(UpDecoderBlock(prev, out, c.layers_per_block + 1, groups, i + 1 < rev.size(), opts));
    up_blocks->push_back(up_.back());
  }
  conv_norm_out = register_module("conv_norm_out", GroupNorm(groups, boc[0], 1e-6, opts));
  conv_out = register_module("conv_out", Conv2d(boc[0], c.out_channels, 3, 1, 1, opts));
}

at::Tensor VaeDecoderImpl::forward(const at::Tensor& latents, Taps* taps) {
  at::Tensor h = conv_in->forward(latents);
  tap(taps, "decoder.conv_in", h);
  h = mid_block->forward(h);
  tap(taps, "decoder.mid_block", h);
  for (size_t i = 0; i < up_.size(); ++i) {
    h = up_[i]->forward(h);
    tap(taps, "decoder.up_blocks." + std::to_string(i), h);
  }
  return conv_out->forward(silu_fresh(conv_norm_out->forward(h)));
}

}  // namespace prefdiff::vae
