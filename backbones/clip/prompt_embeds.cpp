#include "clip/prompt_embeds.hpp"

#include <ATen/ATen.h>

namespace prefdiff::clip {

namespace {

const at::Tensor& hidden_from_end(const TextEncoderOutput& out, int64_t k, const char* what) {
  const int64_t n = static_cast<int64_t>(out.hidden_states.size());
  if (k < 1 || k > n)
    throw std::invalid_argument(std::string(what) + ": clip_skip selects hidden_states[-" + std::to_string(k) +
                                "], but the encoder has " + std::to_string(n) + " (embeddings + layers)");
  return out.hidden_states[n - k];
}

}  // namespace

at::Tensor sd15_prompt_embeds(ClipTextModel& text_encoder, const at::Tensor& input_ids, int64_t clip_skip) {
  if (clip_skip < 0) throw std::invalid_argument("sd15_prompt_embeds: clip_skip must be >= 0");
  if (clip_skip == 0) return text_encoder->forward(input_ids).last_hidden_state;
  TextEncoderOutput out = text_encoder->forward(input_ids, {}, /*output_hidden_states=*/true);
  return text_encoder->text_model->final_layer_norm->forward(hidden_from_end(out, clip_skip + 1, "sd15_prompt_embeds"));
}

SdxlPromptEmbeds sdxl_prompt_embeds(ClipTextModel* text_encoder, ClipTextModel& text_encoder_2, const at::Tensor& input_ids,
                                    const at::Tensor& input_ids_2, int64_t clip_skip) {
  if (clip_skip < 0) throw std::invalid_argument("sdxl_prompt_embeds: clip_skip must be >= 0");
  if (!text_encoder_2->has_projection())
    throw std::invalid_argument("sdxl_prompt_embeds: text_encoder_2 must be a CLIPTextModelWithProjection "
                                "(its projected pooled output is SDXL's text_embeds)");
  std::vector<at::Tensor> parts;
  if (text_encoder) {
    TextEncoderOutput out1 = (*text_encoder)->forward(input_ids, {}, true);
    parts.push_back(hidden_from_end(out1, clip_skip + 2, "sdxl_prompt_embeds (text_encoder)"));
  }
  TextEncoderOutput out2 = text_encoder_2->forward(input_ids_2, {}, true);
  parts.push_back(hidden_from_end(out2, clip_skip + 2, "sdxl_prompt_embeds (text_encoder_2)"));
  if (parts.size() == 2 && parts[0].sizes().slice(0, 2) != parts[1].sizes().slice(0, 2))
    throw std::invalid_argument("sdxl_prompt_embeds: input_ids and input_ids_2 must have the same [B,S]");
  SdxlPromptEmbeds r;
  r.prompt_embeds = parts.size() == 1 ? parts[0] : at::cat({parts[0], parts[1].to(parts[0].device())}, -1);
  r.pooled_prompt_embeds = out2.text_embeds;
  return r;
}

}  // namespace prefdiff::clip
