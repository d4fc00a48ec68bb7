#include "clip/clip_text.hpp"

#include <ATen/ATen.h>

#include <sstream>

namespace prefdiff::clip {

namespace {

std::string shape_of(const at::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

void check_ids(const at::Tensor& ids, const at::Tensor& mask, const ClipTextConfig& c) {
  if (!ids.defined() || ids.dim() != 2 || at::isFloatingType(ids.scalar_type()) || ids.scalar_type() == at::kBool)
    throw std::invalid_argument("clip text: input_ids must be an integer tensor [B,S], got " +
                                (ids.defined() ? shape_of(ids) + " " + std::string(c10::toString(ids.scalar_type())) : "undefined"));
  if (ids.size(1) > c.max_position_embeddings || ids.size(1) == 0)
    throw std::invalid_argument("clip text: sequence length " + std::to_string(ids.size(1)) + " is outside 1.." +
                                std::to_string(c.max_position_embeddings) + " (max_position_embeddings)");
  if (ids.numel() > 0) {
    const auto [mn, mx] = at::aminmax(ids);
    const at::Tensor range = at::stack({mn, mx}).cpu();  // one device-to-host copy
    const int64_t lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
    if (lo < 0 || hi >= c.vocab_size)
      throw std::invalid_argument("clip text: token ids must be in [0, " + std::to_string(c.vocab_size) + "), got [" +
                                  std::to_string(lo) + ", " + std::to_string(hi) + "]. HINT: tokenizer and text encoder differ?");
  }
  if (mask.defined() && mask.sizes() != ids.sizes())
    throw std::invalid_argument("clip text: attention_mask must have the shape of input_ids " + shape_of(ids) + ", got " +
                                shape_of(mask));
}

}  // namespace

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const ClipTextConfig& c, const at::TensorOptions& opts) {
  token_embedding = register_module("token_embedding", Embedding(c.vocab_size, c.hidden_size, opts));
  position_embedding = register_module("position_embedding", Embedding(c.max_position_embeddings, c.hidden_size, opts));
}

at::Tensor ClipTextEmbeddingsImpl::forward(const at::Tensor& input_ids) {
  return token_embedding->forward(input_ids) + position_embedding->weight.narrow(0, 0, input_ids.size(1)).unsqueeze(0);
}

ClipTextTransformerImpl::ClipTextTransformerImpl(ClipTextConfig config, const at::TensorOptions& opts)
    : config_(std::move(config)) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(config_, opts));
  encoder = register_module("encoder", ClipEncoder(config_, opts));
  final_layer_norm = register_module("final_layer_norm", LayerNorm(config_.hidden_size, config_.layer_norm_eps, opts));
}

TextEncoderOutput ClipTextTransformerImpl::forward(const at::Tensor& input_ids_in, const at::Tensor& attention_mask,
                                                   bool output_hidden_states) {
  check_ids(input_ids_in, attention_mask, config_);
  const at::Device dev = final_layer_norm->weight.device();
  const at::Tensor ids = input_ids_in.to(dev, at::kLong);
  const int64_t b = ids.size(0), s = ids.size(1);

  AttentionMask mask;
  mask.causal = true;
  if (attention_mask.defined()) {
    // transformers' create_causal_mask for sdpa: causal AND key is not padding, [B,1,S,S] boolean.
    at::Tensor causal = at::ones({s, s}, ids.options().dtype(at::kBool)).tril();
    at::Tensor keys = attention_mask.to(dev).to(at::kBool).view({b, 1, 1, s});
    mask.allowed = causal.view({1, 1, s, s}) & keys;
  }

  TextEncoderOutput out;
  at::Tensor h = embeddings->forward(ids);
  h = encoder->forward(h, mask, output_hidden_states ? &out.hidden_states : nullptr);
  out.last_hidden_state = final_layer_norm->forward(h);
  // transformers: eos_token_id == 2 -> argmax(input_ids) (the EOS 49407 is the largest id); otherwise the
  // first position equal to eos_token_id (0 when a row has none). argmax returns the first maximum.
  out.pooled_index = config_.pool_at_argmax ? ids.to(at::kInt).argmax(-1)
                                                  : ids.eq(config_.eos_token_id).to(at::kInt).argmax(-1);
  out.pooler_output = out.last_hidden_state.index({at::arange(b, ids.options()), out.pooled_index});
  return out;
}

ClipTextModelImpl::ClipTextModelImpl(ClipTextConfig config, bool with_projection, const at::TensorOptions& opts) {
  const int64_t hidden = config.hidden_size, proj = config.projection_dim;
  text_model = register_module("text_model", ClipTextTransformer(std::move(config), opts));
  if (with_projection) text_projection = register_module("text_projection", Linear(hidden, proj, false, opts));
}

TextEncoderOutput ClipTextModelImpl::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                             bool output_hidden_states) {
  TextEncoderOutput out = text_model->forward(input_ids, attention_mask, output_hidden_states);
  if (text_projection) out.text_embeds = text_projection->forward(out.pooler_output);
  return out;
}

}  // namespace prefdiff::clip
