#include "prefdiff/unet2d/transformer.hpp"

#include <ATen/ATen.h>

#include "prefdiff/unet2d/checkpoint.hpp"

namespace prefdiff::unet2d {

AttentionImpl::AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads, int64_t head_dim,
                             const at::TensorOptions& opts)
    : heads_(heads), head_dim_(head_dim) {
  int64_t inner = heads * head_dim;
  to_q = register_module("to_q", Linear(query_dim, inner, false, opts));
  to_k = register_module("to_k", Linear(context_dim, inner, false, opts));
  to_v = register_module("to_v", Linear(context_dim, inner, false, opts));
  out_proj = Linear(inner, query_dim, true, opts);
  to_out = register_module("to_out", torch::nn::ModuleList(out_proj, Dropout(0.0)));
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  const at::Tensor& ctx = context.defined() ? context : x;
  int64_t b = x.size(0);
  auto split = [&](const at::Tensor& t) { return t.view({b, -1, heads_, head_dim_}).transpose(1, 2); };
  at::Tensor q = split(to_q->forward(x));
  at::Tensor k = split(to_k->forward(ctx));
  at::Tensor v = split(to_v->forward(ctx));
  // Default scale 1/sqrt(head_dim), no mask, no dropout: softmax(QK^T/sqrt(d))V.
  at::Tensor o = at::scaled_dot_product_attention(q, k, v);
  o = o.transpose(1, 2).reshape({b, -1, heads_ * head_dim_});
  return out_proj->forward(o);
}

GegluImpl::GegluImpl(int64_t dim_in, int64_t dim_out, const at::TensorOptions& opts) {
  proj = register_module("proj", Linear(dim_in, 2 * dim_out, true, opts));
}

at::Tensor GegluImpl::forward(const at::Tensor& x) {
  auto parts = proj->forward(x).chunk(2, -1);  // value first, gate second
  return parts[0] * at::gelu(parts[1]);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, const at::TensorOptions& opts) {
  geglu_ = Geglu(dim, 4 * dim, opts);
  out_ = Linear(4 * dim, dim, true, opts);
  net = register_module("net", torch::nn::ModuleList(geglu_, Dropout(0.0), out_));
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) { return out_->forward(geglu_->forward(x)); }

BasicTransformerBlockImpl::BasicTransformerBlockImpl(int64_t dim, int64_t heads, int64_t head_dim,
                                                     int64_t context_dim, const at::TensorOptions& opts) {
  norm1 = register_module("norm1", LayerNorm(dim, 1e-5, opts));
  attn1 = register_module("attn1", Attention(dim, dim, heads, head_dim, opts));
  norm2 = register_module("norm2", LayerNorm(dim, 1e-5, opts));
  attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim, opts));
  norm3 = register_module("norm3", LayerNorm(dim, 1e-5, opts));
  ff = register_module("ff", FeedForward(dim, opts));
}

at::Tensor BasicTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  at::Tensor h = attn1->forward(norm1->forward(x)) + x;
  h = attn2->forward(norm2->forward(h), context) + h;
  return ff->forward(norm3->forward(h)) + h;
}

Transformer2DModelImpl::Transformer2DModelImpl(int64_t heads, int64_t channels, int64_t layers, int64_t context_dim,
                                               int64_t groups, bool linear_projection, const at::TensorOptions& opts)
    : linear_(linear_projection) {
  int64_t head_dim = channels / heads;
  inner_ = heads * head_dim;
  norm = register_module("norm", GroupNorm(groups, channels, 1e-6, opts));
  if (linear_) {
    lin_in_ = register_module("proj_in", Linear(channels, inner_, true, opts));
    proj_in = lin_in_.get();
  } else {
    conv_in_ = register_module("proj_in", Conv2d(channels, inner_, 1, 1, 0, opts));
    proj_in = conv_in_.get();
  }
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    blocks_.push_back(BasicTransformerBlock(inner_, heads, head_dim, context_dim, opts));
    transformer_blocks->push_back(blocks_.back());
  }
  if (linear_) {
    lin_out_ = register_module("proj_out", Linear(inner_, channels, true, opts));
    proj_out = lin_out_.get();
  } else {
    conv_out_ = register_module("proj_out", Conv2d(inner_, channels, 1, 1, 0, opts));
    proj_out = conv_out_.get();
  }
}

at::Tensor Transformer2DModelImpl::project_in(const at::Tensor& x) {
  int64_t b = x.size(0), hgt = x.size(2), wid = x.size(3);
  at::Tensor h = norm->forward(x);
  if (linear_) return lin_in_->forward(h.permute({0, 2, 3, 1}).reshape({b, hgt * wid, -1}));
  return conv_in_->forward(h).permute({0, 2, 3, 1}).reshape({b, hgt * wid, inner_});
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context) {
  return forward(x, context, nullptr);
}

at::Tensor Transformer2DModelImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                           const std::function<bool(const std::string&)>& checkpointed) {
  int64_t b = x.size(0), hgt = x.size(2), wid = x.size(3);
  at::Tensor h;
  if (checkpointed && checkpointed("proj_in")) {
    auto self = std::static_pointer_cast<Transformer2DModelImpl>(shared_from_this());  // outlives the graph
    std::vector<at::Tensor> params = norm->parameters();
    for (const auto& p : (linear_ ? static_cast<torch::nn::Module&>(*lin_in_) : *conv_in_).parameters()) params.push_back(p);
    h = checkpoint([self](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{self->project_in(in[0])}; },
                   {x}, params)[0];
  } else {
    h = project_in(x);
  }
  for (size_t i = 0; i < blocks_.size(); ++i) {
    if (checkpointed && checkpointed("transformer_blocks." + std::to_string(i))) {
      BasicTransformerBlock blk = blocks_[i];
      auto fn = [blk](const std::vector<at::Tensor>& in) mutable { return std::vector<at::Tensor>{blk->forward(in[0], in[1])}; };
      h = checkpoint(fn, {h, context}, blk->parameters())[0];
    } else {
      h = blocks_[i]->forward(h, context);
    }
  }
  if (linear_) {
    h = lin_out_->forward(h).reshape({b, hgt, wid, -1}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
  } else {
    h = conv_out_->forward(h.reshape({b, hgt, wid, inner_}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format()));
  }
  return h + x;
}

}  // namespace prefdiff::unet2d
