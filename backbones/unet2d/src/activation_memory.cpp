// The saved-activation model of the UNet's training forward: every tensor autograd keeps for backward, op by
// op, as unet.cpp / blocks.cpp / resnet.cpp / transformer.cpp compute them. Notation: B images, P = B*C*H*W
// elements of a feature map, T = B*N*D elements of a token sequence (N = H*W tokens of width D = C), `a` the
// bytes of a matmul/convolution element (4 in float32, 2 under 16-bit autocast), `ac` = 1 under autocast, `n` the
// bytes of a norm's output (4, or `a` where autocast runs norms in the input dtype) and `c4` = 1 where a norm casts a
// 16-bit input up to float32 and saves that cast (CUDA autocast).
// What each op saves (LibTorch's derivatives): group/layer norm its input and per-group (per-row) mean and rstd;
// SiLU and GELU their input; convolutions and linears their input and weight; SDPA (a fused kernel: flash or
// memory-efficient) q, k, v, its output and a float32 logsumexp; mul both operands; add, cat, views, nearest
// upsampling nothing. Autocast: a float32 tensor entering a convolution or linear is cast to 16 bits and the
// cast is what is saved (three casts when three linears read it: non-leaf casts are not cached); on CUDA a
// 16-bit tensor entering a norm is cast to float32 and that cast is saved; weights are cast once per forward.
#include "prefdiff/unet2d/activation_memory.hpp"

#include <algorithm>
#include <numeric>

namespace prefdiff::unet2d {

namespace {

struct SkipTensor {
  size_t id;
  int64_t channels, height, width;
};

class Walker {
 public:
  Walker(const Unet2dConfig& c, const ActivationShape& s, const ActivationPrecision& p) : c_(c), s_(s), p_(p) {}

  ActivationEstimate run() {
    const Unet2dConfig& c = c_;
    const double B = static_cast<double>(s_.batch), a = p_.low_bytes;
    const int64_t c0 = c.block_out_channels[0], temb = c.time_embedding_dim;
    int64_t h = s_.height, w = s_.width;

    // Time (and SDXL text/time) embedding: [B, temb] tensors, a few kilobytes.
    e_.fixed += a * B * c0 + 2 * a * B * temb + wcopy(double(c0) * temb + double(temb) * temb);
    if (c.text_time)
      e_.fixed += a * B * c.projection_class_embeddings_input_dim + 2 * a * B * temb +
                  wcopy(double(c.projection_class_embeddings_input_dim) * temb + double(temb) * temb);
    e_.fixed += 2 * a * B * temb;  // emb (kept by the SiLU) and silu(emb) (kept by every time_emb_proj)

    // conv_in keeps the latents (the caller's) or, under autocast, their 16-bit cast.
    const double k_in = double(c.conv_in_kernel) * c.conv_in_kernel;
    e_.fixed += ac() * a * B * c.in_channels * h * w + wcopy(k_in * c.in_channels * c0);
    size_t x = tensor(a * B * c0 * h * w);
    std::vector<SkipTensor> skips{{x, c0, h, w}};

    const size_t n = c.num_blocks();
    int64_t ch = c0;
    for (size_t i = 0; i < n; ++i) {
      const std::string name = "down_blocks." + std::to_string(i);
      const int64_t out = c.block_out_channels[i];
      for (int64_t j = 0; j < c.layers_per_block[i]; ++j) {
        x = resnet(name + ".resnets." + std::to_string(j), x, j == 0 ? ch : out, out, h, w);
        if (c.down_blocks[i] == BlockKind::kCrossAttnDown)
          x = transformer(name + ".attentions." + std::to_string(j), x, out, h, w, c.num_heads[i],
                          c.transformer_layers_per_block[i], c.cross_attention_dim[i]);
        skips.push_back({x, out, h, w});
      }
      ch = out;
      if (i + 1 < n) {  // Downsample2D: a stride-2 3x3 conv keeps its input (already 16-bit under autocast)
        e_.tensors[x].kept = true;
        const bool pad0 = c.downsample_padding == 0;
        if (pad0) e_.fixed += a * B * ch * (h + 1) * (w + 1);  // the padded copy the conv keeps instead
        h = pad0 ? (h - 2) / 2 + 1 : (h + 2 * c.downsample_padding - 3) / 2 + 1;
        w = pad0 ? (w - 2) / 2 + 1 : (w + 2 * c.downsample_padding - 3) / 2 + 1;
        e_.fixed += wcopy(9.0 * ch * ch);
        x = tensor(a * B * ch * h * w);
        skips.push_back({x, ch, h, w});
      }
    }
    if (c.has_mid_block) {
      x = resnet("mid_block.resnets.0", x, ch, ch, h, w);
      x = transformer("mid_block.attentions.0", x, ch, h, w, c.num_heads.back(), c.transformer_layers_per_block.back(),
                      c.cross_attention_dim.back());
      x = resnet("mid_block.resnets.1", x, ch, ch, h, w);
    }
    for (size_t i = 0; i < n; ++i) {
      const size_t r = n - 1 - i;
      const std::string name = "up_blocks." + std::to_string(i);
      const int64_t out = c.block_out_channels[r];
      for (int64_t j = 0; j <= c.layers_per_block[r]; ++j) {
        const SkipTensor skip = skips.back();
        skips.pop_back();
        const int64_t in = ch + skip.channels;  // cat(h, skip): a new tensor, kept by the resnet that reads it
        const size_t cat = tensor(a * B * in * h * w);
        x = resnet(name + ".resnets." + std::to_string(j), cat, in, out, h, w);
        ch = out;
        if (c.up_blocks[i] == BlockKind::kCrossAttnUp)
          x = transformer(name + ".attentions." + std::to_string(j), x, out, h, w, c.num_heads[r],
                          c.transformer_layers_per_block[r], c.cross_attention_dim[r]);
      }
      if (i + 1 < n) {  // Upsample2D: nearest to the next skip's size (keeps nothing), then a 3x3 conv keeps that
        h = skips.back().height;
        w = skips.back().width;
        e_.fixed += a * B * ch * h * w + wcopy(9.0 * ch * ch);
        x = tensor(a * B * ch * h * w);
      }
    }
    // Head: conv_norm_out keeps x (float32) or its float32 cast; SiLU keeps the norm's output; conv_out the
    // SiLU's output (or its cast).
    const double p0 = B * ch * h * w;
    if (c4())
      e_.fixed += 4 * p0;
    else
      e_.tensors[x].kept = true;
    const double k_out = double(c.conv_out_kernel) * c.conv_out_kernel;
    e_.fixed += norm_out() * p0 + a * p0 + 8 * B * c.norm_num_groups + wcopy(k_out * ch * c.out_channels);
    e_.output = a * B * c.out_channels * h * w;
    e_.per_checkpoint = static_cast<double>(p_.checkpoint_state_bytes);
    return e_;
  }

 private:
  double ac() const { return p_.autocast ? 1.0 : 0.0; }
  bool c4() const { return p_.autocast && p_.norms_float32; }           // norms save a float32 cast of x
  double norm_out() const { return c4() || !p_.autocast ? 4.0 : double(p_.low_bytes); }  // a norm's output
  double norm_in() const { return c4() ? 4.0 : double(p_.low_bytes); }  // what a norm of a 16-bit/a tensor keeps
  double wcopy(double weights) const { return p_.autocast ? 2.0 * weights : 0.0; }
  size_t tensor(double bytes) {
    e_.tensors.push_back({bytes, false});
    return e_.tensors.size() - 1;
  }
  void unit(std::string name, UnitKind kind, size_t input, double saved, bool saves_input, double flops) {
    e_.units.push_back({std::move(name), kind, saved, saves_input, input, flops});
  }

  // ResnetBlock2D: norm1 (float32 cast of x under autocast), SiLU keeps norm1's output, conv1 the SiLU's output
  // (or its cast), norm2 conv1+temb (or its float32 cast), SiLU norm2's output, conv2 the SiLU's output (or its
  // cast); conv_shortcut keeps x itself. Output: a * P_out.
  size_t resnet(const std::string& name, size_t in, int64_t cin, int64_t cout, int64_t h, int64_t w) {
    const double B = static_cast<double>(s_.batch), a = p_.low_bytes, hw = double(h) * w;
    const double pin = B * cin * hw, pout = B * cout * hw;
    const double temb = static_cast<double>(c_.time_embedding_dim);
    const bool shortcut = cin != cout;
    const double weights = 9.0 * cin * cout + 9.0 * cout * cout + temb * cout + (shortcut ? double(cin) * cout : 0);
    const double saved = ((c4() ? 4 : 0) + norm_out() + a) * pin + (norm_in() + norm_out() + a) * pout + 16 * B * c_.norm_num_groups +
                         wcopy(weights);
    const double flops = 2 * B * hw * (9.0 * cin * cout + 9.0 * cout * cout + (shortcut ? double(cin) * cout : 0)) +
                         2 * B * temb * cout;
    unit(name, UnitKind::kResnet, in, saved, !c4() || shortcut, flops);
    return tensor(a * pout);
  }

  // Transformer2DModel: the input part (GroupNorm, proj_in) and `layers` BasicTransformerBlocks are units;
  // proj_out keeps the last block's output (or its contiguous copy, same size) whatever is checkpointed.
  size_t transformer(const std::string& name, size_t in, int64_t channels, int64_t h, int64_t w, int64_t heads,
                     int64_t layers, int64_t context_dim) {
    const double B = static_cast<double>(s_.batch), a = p_.low_bytes, N = double(h) * w, D = double(channels);
    const double S = static_cast<double>(s_.context_len), X = static_cast<double>(context_dim);
    const double P = B * channels * N, T = B * N * D;
    unit(name + ".proj_in", UnitKind::kTransformerIn, in, (c4() ? 4 : 0) * P + a * P + 8 * B * c_.norm_num_groups + wcopy(D * D),
         !c4(), 2 * B * N * D * D);
    size_t t = tensor(a * T);
    for (int64_t l = 0; l < layers; ++l) {
      // norm1 (cast of x), its output read by to_q/k/v (three 16-bit casts, or once in float32), q k v, the
      // attention output (kept by SDPA and out_proj), logsumexp; norm2's input h1 (or its cast), its output (or
      // cast) for to_q, q2, k2/v2 of the context (and the context's casts), output, logsumexp; norm3's input h2,
      // its output for the GEGLU projection, the projection (8D wide: value and gate are views of it), GELU's
      // output, the product; three norms' mean and rstd.
      const double n1 = c4() ? 3 * a * T : a * T;  // float32 norm output cast three times, or saved once
      const double attn1 = 3 * a * T + a * T + 4 * B * heads * N;
      const double attn2 = a * T + a * T + 2 * a * B * S * D + ac() * 2 * a * B * S * X + a * T + 4 * B * heads * N;
      const double ff = a * T + 8 * a * T + 4 * a * T + 4 * a * T;
      const double saved = (c4() ? 4 : 0) * T + n1 + attn1 + norm_in() * T + attn2 + norm_in() * T + ff + 3 * 8 * B * N +
                           wcopy(4 * D * D + 2 * D * D + 2 * X * D + 12 * D * D);
      const double flops = 2 * B * N * D * D * 4 + 4 * B * N * N * D + 2 * B * N * D * D * 2 + 2 * B * S * X * D * 2 +
                           4 * B * N * S * D + 2 * B * N * D * 8 * D + 2 * B * N * 4 * D * D;
      unit(name + ".transformer_blocks." + std::to_string(l), UnitKind::kTransformerBlock, t, saved, !c4(), flops);
      t = tensor(a * T);
    }
    e_.tensors[t].kept = true;
    e_.fixed += wcopy(D * D);
    return tensor(a * P);  // proj_out(...) + x
  }

  const Unet2dConfig& c_;
  ActivationShape s_;
  ActivationPrecision p_;
  ActivationEstimate e_;
};

}  // namespace

double ActivationEstimate::saved_bytes(const std::vector<bool>& checkpointed) const {
  std::vector<bool> held(tensors.size(), false);
  double total = fixed;
  for (size_t i = 0; i < tensors.size(); ++i) held[i] = tensors[i].kept;
  for (size_t u = 0; u < units.size(); ++u) {
    const bool ck = u < checkpointed.size() && checkpointed[u];
    total += ck ? per_checkpoint : units[u].saved;
    if (ck || units[u].saves_input) held[units[u].input] = true;
  }
  for (size_t i = 0; i < tensors.size(); ++i)
    if (held[i]) total += tensors[i].bytes;
  return total;
}

double ActivationEstimate::peak_bytes(const std::vector<bool>& checkpointed) const {
  double recompute = 0;
  for (size_t u = 0; u < units.size(); ++u)
    if (u < checkpointed.size() && checkpointed[u]) recompute = std::max(recompute, units[u].saved);
  return saved_bytes(checkpointed) + recompute;
}

double ActivationEstimate::recompute_flops(const std::vector<bool>& checkpointed) const {
  double total = 0;
  for (size_t u = 0; u < units.size(); ++u)
    if (u < checkpointed.size() && checkpointed[u]) total += units[u].flops;
  return total;
}

ActivationEstimate estimate_activations(const Unet2dConfig& config, const ActivationShape& shape,
                                        const ActivationPrecision& precision) {
  return Walker(config, shape, precision).run();
}

CheckpointPlan plan_checkpointing(const ActivationEstimate& estimate, double budget_bytes) {
  const size_t n = estimate.units.size();
  CheckpointPlan plan;
  plan.checkpointed.assign(n, true);
  if (estimate.peak_bytes(std::vector<bool>(n, false)) <= budget_bytes) {
    plan.checkpointed.assign(n, false);  // everything fits (a greedy pass can stop short of this)
  } else if (estimate.peak_bytes(plan.checkpointed) > budget_bytes) {
    plan.fits = false;
  } else {
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t{0});
    auto value = [&](size_t u) { return estimate.units[u].flops / std::max(estimate.units[u].saved, 1.0); };
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return value(x) > value(y); });
    for (size_t u : order) {
      plan.checkpointed[u] = false;
      if (estimate.peak_bytes(plan.checkpointed) > budget_bytes) plan.checkpointed[u] = true;
    }
  }
  plan.peak_bytes = estimate.peak_bytes(plan.checkpointed);
  plan.recompute_flops = estimate.recompute_flops(plan.checkpointed);
  return plan;
}

}  // namespace prefdiff::unet2d
