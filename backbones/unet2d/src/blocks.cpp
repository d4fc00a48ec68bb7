#include "prefdiff/unet2d/blocks.hpp"

#include <ATen/ATen.h>

#include "prefdiff/unet2d/checkpoint.hpp"

namespace prefdiff::unet2d {

// Checkpointing units: every resnet; inside a Transformer2DModel its input part and each BasicTransformerBlock
// (finer than diffusers' whole-transformer checkpoint: backward then recomputes one transformer layer at a time,
// so the recomputation never holds a 10-layer SDXL transformer's activations at once).
at::Tensor run_resnet(ResnetBlock2D& r, const at::Tensor& x, const BlockContext& bc, const std::string& name) {
  if (!r->is_training() || !bc.checkpointed(name)) return r->forward(x, bc.act_emb);
  ResnetBlock2D mod = r;
  auto fn = [mod](const std::vector<at::Tensor>& in) mutable { return std::vector<at::Tensor>{mod->forward(in[0], in[1])}; };
  return checkpoint(fn, {x, bc.act_emb}, r->parameters())[0];
}

at::Tensor run_transformer(Transformer2DModel& t, const at::Tensor& x, const BlockContext& bc, const std::string& name) {
  if (!t->is_training() || !bc.checkpoint) return t->forward(x, bc.context);
  return t->forward(x, bc.context, [&bc, &name](const std::string& part) { return bc.checkpointed(name + "." + part); });
}

DownBlockImpl::DownBlockImpl(const BlockSpec& s, const at::TensorOptions& opts) {
  if (s.cross) attentions = register_module("attentions", torch::nn::ModuleList());
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t j = 0; j < s.layers; ++j) {
    res_.push_back(ResnetBlock2D(j == 0 ? s.in : s.out, s.out, s.temb, s.groups, s.eps, s.dropout, 1.0, opts));
    resnets->push_back(res_.back());
    if (s.cross) {
      attn_.push_back(Transformer2DModel(s.heads, s.out, s.transformer_layers, s.context_dim, s.groups,
                                         s.linear_projection, opts));
      attentions->push_back(attn_.back());
    }
  }
  if (s.resample) {
    down_ = Downsample2D(s.out, s.downsample_padding, opts);
    downsamplers = register_module("downsamplers", torch::nn::ModuleList(down_));
  }
}

at::Tensor DownBlockImpl::forward(const at::Tensor& x, const BlockContext& bc, std::vector<at::Tensor>& skips,
                                  const std::string& name) {
  at::Tensor h = x;
  for (size_t j = 0; j < res_.size(); ++j) {
    h = run_resnet(res_[j], h, bc, name + ".resnets." + std::to_string(j));
    bc.tap(name + ".resnets." + std::to_string(j), h);
    if (!attn_.empty()) {
      h = run_transformer(attn_[j], h, bc, name + ".attentions." + std::to_string(j));
      bc.tap(name + ".attentions." + std::to_string(j), h);
    }
    skips.push_back(h);
  }
  if (down_) {
    h = down_->forward(h);
    skips.push_back(h);
  }
  return h;
}

MidBlockImpl::MidBlockImpl(const BlockSpec& s, double output_scale_factor, const at::TensorOptions& opts) {
  attn_ = Transformer2DModel(s.heads, s.out, s.transformer_layers, s.context_dim, s.groups, s.linear_projection, opts);
  attentions = register_module("attentions", torch::nn::ModuleList(attn_));
  res0_ = ResnetBlock2D(s.out, s.out, s.temb, s.groups, s.eps, s.dropout, output_scale_factor, opts);
  res1_ = ResnetBlock2D(s.out, s.out, s.temb, s.groups, s.eps, s.dropout, output_scale_factor, opts);
  resnets = register_module("resnets", torch::nn::ModuleList(res0_, res1_));
}

at::Tensor MidBlockImpl::forward(const at::Tensor& x, const BlockContext& bc) {
  at::Tensor h = run_resnet(res0_, x, bc, "mid_block.resnets.0");
  h = run_transformer(attn_, h, bc, "mid_block.attentions.0");
  return run_resnet(res1_, h, bc, "mid_block.resnets.1");
}

UpBlockImpl::UpBlockImpl(const BlockSpec& s, const at::TensorOptions& opts) {
  if (s.cross) attentions = register_module("attentions", torch::nn::ModuleList());
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (int64_t j = 0; j < s.layers; ++j) {
    int64_t skip = (j == s.layers - 1) ? s.in : s.out;
    int64_t res_in = (j == 0) ? s.prev_out : s.out;
    res_.push_back(ResnetBlock2D(res_in + skip, s.out, s.temb, s.groups, s.eps, s.dropout, 1.0, opts));
    resnets->push_back(res_.back());
    if (s.cross) {
      attn_.push_back(Transformer2DModel(s.heads, s.out, s.transformer_layers, s.context_dim, s.groups,
                                         s.linear_projection, opts));
      attentions->push_back(attn_.back());
    }
  }
  if (s.resample) {
    up_ = Upsample2D(s.out, opts);
    upsamplers = register_module("upsamplers", torch::nn::ModuleList(up_));
  }
}

at::Tensor UpBlockImpl::forward(const at::Tensor& x, const BlockContext& bc, std::vector<at::Tensor>& skips,
                                const std::vector<int64_t>& upsample_size, const std::string& name) {
  at::Tensor h = x;
  for (size_t j = 0; j < res_.size(); ++j) {
    at::Tensor skip = skips.back();
    skips.pop_back();
    h = run_resnet(res_[j], at::cat({h, skip}, 1), bc, name + ".resnets." + std::to_string(j));  // h, then skip
    bc.tap(name + ".resnets." + std::to_string(j), h);
    if (!attn_.empty()) {
      h = run_transformer(attn_[j], h, bc, name + ".attentions." + std::to_string(j));
      bc.tap(name + ".attentions." + std::to_string(j), h);
    }
  }
  if (up_) h = up_->forward(h, upsample_size);
  return h;
}

}  // namespace prefdiff::unet2d
