#pragma once
// The prompt conditioning diffusers' pipelines build from token ids (tokenization is the caller's):
// StableDiffusionPipeline.encode_prompt (SD1.5) and StableDiffusionXLPipeline.encode_prompt (SDXL).

#include "clip/clip_text.hpp"

namespace prefdiff::clip {

// SD1.5: last_hidden_state [B,S,H]; with clip_skip k >= 1, final_layer_norm(hidden_states[-(k+1)]).
at::Tensor sd15_prompt_embeds(ClipTextModel& text_encoder, const at::Tensor& input_ids, int64_t clip_skip = 0);

struct SdxlPromptEmbeds {
  at::Tensor prompt_embeds;         // [B,S,H1+H2]: both encoders' hidden_states[-(clip_skip+2)], concatenated
  at::Tensor pooled_prompt_embeds;  // [B,P2]: text_encoder_2's text_embeds (projected pooled output)
};

// SDXL: text_encoder (CLIP-L, may be null for refiner-style pipelines that only have text_encoder_2) gets
// input_ids, text_encoder_2 (OpenCLIP bigG, CLIPTextModelWithProjection) input_ids_2 (its tokenizer pads
// with "!" = id 0). The UNet's added condition text_embeds is pooled_prompt_embeds.
SdxlPromptEmbeds sdxl_prompt_embeds(ClipTextModel* text_encoder, ClipTextModel& text_encoder_2,
                                    const at::Tensor& input_ids, const at::Tensor& input_ids_2, int64_t clip_skip = 0);

}  // namespace prefdiff::clip
