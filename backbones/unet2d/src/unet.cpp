#include "prefdiff/unet2d/unet.hpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <sstream>

namespace prefdiff::unet2d {

at::Tensor timestep_embedding(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  // Same op sequence as diffusers, in float32, so the table matches bit for bit.
  int64_t half = dim / 2;
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  at::Tensor exponent = -std::log(10000.0) * at::arange(0, half, f32);
  exponent = exponent / (static_cast<double>(half) - freq_shift);
  at::Tensor arg = timesteps.unsqueeze(1).to(at::kFloat) * at::exp(exponent).unsqueeze(0);
  at::Tensor emb = at::cat({at::sin(arg), at::cos(arg)}, -1);
  if (flip_sin_to_cos) emb = at::cat({emb.narrow(1, half, half), emb.narrow(1, 0, half)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1, 0, 0}, 0);
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in, int64_t dim, const at::TensorOptions& opts) {
  linear_1 = register_module("linear_1", Linear(in, dim, true, opts));
  linear_2 = register_module("linear_2", Linear(dim, dim, true, opts));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) { return linear_2->forward(at::silu(linear_1->forward(x))); }

Unet2dModelImpl::Unet2dModelImpl(Unet2dConfig c, const at::TensorOptions& opts) : config_(std::move(c)) {
  const Unet2dConfig& cfg = config_;
  const auto& boc = cfg.block_out_channels;
  size_t n = boc.size();
  int64_t temb = cfg.time_embedding_dim;
  conv_in = register_module("conv_in", Conv2d(cfg.in_channels, boc[0], cfg.conv_in_kernel, 1, (cfg.conv_in_kernel - 1) / 2, opts));
  time_embedding = register_module("time_embedding", TimestepEmbedding(boc[0], temb, opts));
  if (cfg.text_time)
    add_embedding = register_module("add_embedding", TimestepEmbedding(cfg.projection_class_embeddings_input_dim, temb, opts));
  // diffusers registers down_blocks and up_blocks (empty) before mid_block; keep its parameter order.
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());

  BlockSpec base;
  base.temb = temb;
  base.groups = cfg.norm_num_groups;
  base.eps = cfg.norm_eps;
  base.dropout = cfg.dropout;
  base.linear_projection = cfg.use_linear_projection;
  base.downsample_padding = cfg.downsample_padding;
  int64_t out = boc[0];
  for (size_t i = 0; i < n; ++i) {
    BlockSpec s = base;
    s.cross = cfg.down_blocks[i] == BlockKind::kCrossAttnDown;
    s.in = out;
    s.out = out = boc[i];
    s.layers = cfg.layers_per_block[i];
    s.heads = cfg.num_heads[i];
    s.transformer_layers = cfg.transformer_layers_per_block[i];
    s.context_dim = cfg.cross_attention_dim[i];
    s.resample = i + 1 < n;
    down_.push_back(DownBlock(s, opts));
    down_blocks->push_back(down_.back());
  }
  if (cfg.has_mid_block) {
    BlockSpec s = base;
    s.cross = true;
    s.in = s.out = boc.back();
    s.heads = cfg.num_heads.back();
    s.transformer_layers = cfg.transformer_layers_per_block.back();
    s.context_dim = cfg.cross_attention_dim.back();
    mid_block = register_module("mid_block", MidBlock(s, cfg.mid_block_scale_factor, opts));
  }
  std::vector<int64_t> rev(boc.rbegin(), boc.rend());
  out = rev[0];
  for (size_t i = 0; i < n; ++i) {
    size_t r = n - 1 - i;  // index into the per-down-block lists, reversed for up blocks
    BlockSpec s = base;
    s.cross = cfg.up_blocks[i] == BlockKind::kCrossAttnUp;
    s.prev_out = out;
    s.out = out = rev[i];
    s.in = rev[std::min(i + 1, n - 1)];
    s.layers = cfg.layers_per_block[r] + 1;
    s.heads = cfg.num_heads[r];
    s.transformer_layers = cfg.transformer_layers_per_block[r];
    s.context_dim = cfg.cross_attention_dim[r];
    s.resample = i + 1 < n;
    up_.push_back(UpBlock(s, opts));
    up_blocks->push_back(up_.back());
  }
  conv_norm_out = register_module("conv_norm_out", GroupNorm(cfg.norm_num_groups, boc[0], cfg.norm_eps, opts));
  conv_out = register_module("conv_out", Conv2d(boc[0], cfg.out_channels, cfg.conv_out_kernel, 1, (cfg.conv_out_kernel - 1) / 2, opts));
}

namespace {
std::string shape_of(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}
}  // namespace

void Unet2dModelImpl::check_inputs(const at::Tensor& sample, const at::Tensor& ctx, const at::Tensor& text_embeds,
                                   const at::Tensor& time_ids) const {
  const Unet2dConfig& c = config_;
  if (!sample.defined() || sample.dim() != 4 || sample.size(1) != c.in_channels)
    throw std::invalid_argument("unet2d: noisy latents must be [B," + std::to_string(c.in_channels) + ",H,W], got " + shape_of(sample));
  int64_t b = sample.size(0);
  bool needs_ctx = c.has_mid_block;
  for (auto k : c.down_blocks) needs_ctx |= k == BlockKind::kCrossAttnDown;
  if (needs_ctx && (!ctx.defined() || ctx.dim() != 3 || ctx.size(0) != b || ctx.size(2) != c.cross_attention_dim.back()))
    throw std::invalid_argument("unet2d: encoder_hidden_states must be [B,S," + std::to_string(c.cross_attention_dim.back()) +
                                "] with B=" + std::to_string(b) + ", got " + shape_of(ctx));
  if (c.text_time) {
    if (!text_embeds.defined() || !time_ids.defined())
      throw std::invalid_argument("unet2d: this UNet (addition_embed_type \"text_time\", SDXL) needs added conditions "
                                  "text_embeds [B," + std::to_string(c.text_embeds_dim()) + "] and time_ids [B,6]");
    if (text_embeds.dim() != 2 || text_embeds.size(0) != b || text_embeds.size(1) != c.text_embeds_dim())
      throw std::invalid_argument("unet2d: text_embeds must be [B," + std::to_string(c.text_embeds_dim()) + "], got " + shape_of(text_embeds));
    if (time_ids.numel() != 6 * b)
      throw std::invalid_argument("unet2d: time_ids must be [B,6], got " + shape_of(time_ids));
  }
}

void Unet2dModelImpl::set_activation_budget(std::optional<double> bytes) {
  if (bytes && !(*bytes >= 0))
    throw std::invalid_argument("unet2d: the activation budget must be >= 0 bytes, got " + std::to_string(*bytes));
  budget_ = bytes;
  choice_ = CheckpointChoice{};
}

void Unet2dModelImpl::set_checkpoint_units(std::optional<std::vector<std::string>> names) {
  if (names) {
    std::set<std::string> known;
    for (const auto& u : estimate_activations(config_, {}, ActivationPrecision::float32()).units) known.insert(u.name);
    for (const auto& n : *names)
      if (!known.count(n))
        throw std::invalid_argument("unet2d: '" + n + "' is not a checkpointing unit of this UNet (units are resnets, "
                                    "attentions.<j>.proj_in and attentions.<j>.transformer_blocks.<i>)");
  }
  units_ = std::move(names);
  choice_ = CheckpointChoice{};
}

std::function<bool(const std::string&)> Unet2dModelImpl::checkpoint_filter(const at::Tensor& sample,
                                                                          const at::Tensor& context) {
  if (!units_ && !budget_ && !checkpointing_) {
    choice_ = CheckpointChoice{};
    return nullptr;
  }
  ActivationShape shape{sample.size(0), sample.size(2), sample.size(3), context.defined() ? context.size(1) : 0};
  const c10::DeviceType type = sample.device().type();
  const bool autocast = at::autocast::is_autocast_enabled(type);
  const std::string mode = units_ ? "units" : budget_ ? "budget" : "all";
  const bool same = choice_.mode == mode && choice_.shape.batch == shape.batch && choice_.shape.height == shape.height &&
                    choice_.shape.width == shape.width && choice_.shape.context_len == shape.context_len &&
                    choice_.autocast == autocast;
  if (!same) {
    ActivationPrecision precision = ActivationPrecision::float32();
    if (autocast)
      precision = {true, static_cast<int64_t>(c10::elementSize(at::autocast::get_autocast_dtype(type))),
                   /*norms_float32=*/type == c10::kCUDA, 16};
    if (sample.is_cpu()) precision.checkpoint_state_bytes = 5056;
    const ActivationEstimate estimate = estimate_activations(config_, shape, precision);
    std::vector<bool> ck(estimate.units.size(), false);
    CheckpointChoice c;
    c.shape = shape;
    c.autocast = autocast;
    c.units = estimate.units.size();
    c.mode = mode;
    if (mode == "all") {
      ck.assign(ck.size(), true);
      c.estimated_peak_bytes = estimate.peak_bytes(ck);
      c.recompute_flops = estimate.recompute_flops(ck);
    } else if (mode == "units") {
      const std::set<std::string> wanted(units_->begin(), units_->end());
      for (size_t u = 0; u < ck.size(); ++u) ck[u] = wanted.count(estimate.units[u].name) > 0;
      c.estimated_peak_bytes = estimate.peak_bytes(ck);
      c.recompute_flops = estimate.recompute_flops(ck);
    } else {
      c.budget_bytes = *budget_;
      const CheckpointPlan plan = plan_checkpointing(estimate, *budget_);
      ck = plan.checkpointed;
      c.estimated_peak_bytes = plan.peak_bytes;
      c.recompute_flops = plan.recompute_flops;
      c.fits = plan.fits;
    }
    for (size_t u = 0; u < ck.size(); ++u)
      if (ck[u]) c.checkpointed.push_back(estimate.units[u].name);
    planned_ = std::set<std::string>(c.checkpointed.begin(), c.checkpointed.end());
    choice_ = std::move(c);
  }
  if (mode == "all") return [](const std::string&) { return true; };
  return [this](const std::string& unit) { return planned_.count(unit) > 0; };
}

at::Tensor Unet2dModelImpl::forward(const at::Tensor& sample_in, const at::Tensor& timesteps,
                                    const at::Tensor& encoder_hidden_states, const at::Tensor& text_embeds,
                                    const at::Tensor& time_ids, ForwardProbe* probe) {
  check_inputs(sample_in, encoder_hidden_states, text_embeds, time_ids);
  const Unet2dConfig& cfg = config_;
  int64_t b = sample_in.size(0);
  at::Tensor sample = sample_in;
  if (cfg.center_input_sample) sample = 2 * sample - 1.0;
  if (channels_last_) sample = sample.contiguous(at::MemoryFormat::ChannelsLast);

  at::Tensor t = timesteps.dim() == 0 ? timesteps.reshape({1}) : timesteps;
  t = t.to(sample.device()).expand({b});
  BlockContext bc;
  bc.taps = probe ? &probe->taps : nullptr;
  bc.context = encoder_hidden_states;
  if (is_training() && at::GradMode::is_enabled()) bc.checkpoint = checkpoint_filter(sample, encoder_hidden_states);

  at::Tensor t_emb = probe && probe->time_proj.defined()
                         ? probe->time_proj
                         : timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift);
  bc.tap("time_proj", t_emb);
  at::Tensor emb = time_embedding->forward(t_emb.to(sample.scalar_type()));
  bc.tap("time_embedding", emb);
  if (cfg.text_time) {
    at::Tensor te = probe && probe->add_time_proj.defined()
                        ? probe->add_time_proj
                        : timestep_embedding(time_ids.flatten(), cfg.addition_time_embed_dim, cfg.flip_sin_to_cos,
                                             cfg.freq_shift);
    bc.tap("add_time_proj", te);
    // cat promotes like torch.concat (float32 sinusoid), then the result takes the embedding dtype.
    at::Tensor add = at::cat({text_embeds, te.reshape({b, -1})}, -1).to(emb.scalar_type());
    at::Tensor aug = add_embedding->forward(add);
    bc.tap("add_embedding", aug);
    emb = emb + aug;
  }
  bc.tap("emb", emb);
  bc.act_emb = at::silu(emb);

  at::Tensor h = conv_in->forward(sample);
  std::vector<at::Tensor> skips{h};
  for (size_t i = 0; i < down_.size(); ++i) {
    std::string name = "down_blocks." + std::to_string(i);
    h = down_[i]->forward(h, bc, skips, name);
    bc.tap(name, h);
  }
  if (mid_block) {
    h = mid_block->forward(h, bc);
    bc.tap("mid_block", h);
  }
  int64_t factor = int64_t(1) << (up_.size() - 1);
  bool forward_upsample_size = sample.size(2) % factor != 0 || sample.size(3) % factor != 0;
  for (size_t i = 0; i < up_.size(); ++i) {
    std::vector<int64_t> size;
    int64_t nres = up_[i]->num_resnets();
    if (i + 1 < up_.size() && forward_upsample_size) {
      const at::Tensor& next = skips[skips.size() - nres - 1];
      size = {next.size(2), next.size(3)};
    }
    std::string name = "up_blocks." + std::to_string(i);
    h = up_[i]->forward(h, bc, skips, size, name);
    bc.tap(name, h);
  }
  return conv_out->forward(at::silu(conv_norm_out->forward(h)));
}

}  // namespace prefdiff::unet2d
