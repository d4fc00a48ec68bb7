#include "prefdiff/unet2d/sdpa_backend.hpp"

#include <ATen/ATen.h>

#include <map>
#include <tuple>

namespace prefdiff::unet2d {

std::string sdpa_backend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  // at::SDPBackend's values (ATen/SDPBackend.h, a header older LibTorch releases do not ship): -1 error, 0 math,
  // 1 flash, 2 memory-efficient, 3 cuDNN, 4 overrideable.
  switch (at::_fused_sdp_choice(q, k, v)) {
    case 0: return "math";
    case 1: return "flash";
    case 2: return "efficient";
    case 3: return "cudnn";
    case 4: return "overrideable";
    default: return "error";
  }
}

std::vector<AttentionCall> attention_backends(const Unet2dConfig& c, const ActivationShape& s, at::ScalarType dtype,
                                              c10::Device device) {
  // (tokens, channels, heads) of every transformer layer, in forward order, counted.
  std::map<std::tuple<int64_t, int64_t, int64_t>, int64_t> layers;
  const size_t n = c.num_blocks();
  std::vector<std::pair<int64_t, int64_t>> level(n);  // spatial size of each level
  int64_t h = s.height, w = s.width;
  for (size_t i = 0; i < n; ++i) {
    level[i] = {h, w};
    if (c.down_blocks[i] == BlockKind::kCrossAttnDown)
      layers[{h * w, c.block_out_channels[i], c.num_heads[i]}] += c.layers_per_block[i] * c.transformer_layers_per_block[i];
    if (i + 1 < n) {
      const bool pad0 = c.downsample_padding == 0;
      h = pad0 ? (h - 2) / 2 + 1 : (h + 2 * c.downsample_padding - 3) / 2 + 1;
      w = pad0 ? (w - 2) / 2 + 1 : (w + 2 * c.downsample_padding - 3) / 2 + 1;
    }
  }
  if (c.has_mid_block) layers[{h * w, c.block_out_channels.back(), c.num_heads.back()}] += c.transformer_layers_per_block.back();
  for (size_t i = 0; i < n; ++i) {
    const size_t r = n - 1 - i;
    if (c.up_blocks[i] == BlockKind::kCrossAttnUp)
      layers[{level[r].first * level[r].second, c.block_out_channels[r], c.num_heads[r]}] +=
          (c.layers_per_block[r] + 1) * c.transformer_layers_per_block[r];
  }
  std::vector<AttentionCall> out;
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  for (const auto& [key, count] : layers) {
    const auto [tokens, channels, heads] = key;
    const int64_t d = channels / heads;
    // As AttentionImpl: the projections' [B, N, heads*d] outputs viewed as [B, heads, N, d].
    auto split = [&](int64_t len) { return at::empty({s.batch, len, heads, d}, opts).transpose(1, 2); };
    const at::Tensor q = split(tokens), k_self = split(tokens), v_self = split(tokens);
    const at::Tensor k_cross = split(s.context_len), v_cross = split(s.context_len);
    out.push_back({"self", s.batch, heads, tokens, tokens, d, count, sdpa_backend(q, k_self, v_self)});
    out.push_back({"cross", s.batch, heads, tokens, s.context_len, d, count, sdpa_backend(q, k_cross, v_cross)});
  }
  return out;
}

}  // namespace prefdiff::unet2d
