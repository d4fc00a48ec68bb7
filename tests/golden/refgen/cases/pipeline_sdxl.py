"""pipeline_sdxl_tiny: diffusers StableDiffusionXLPipeline end to end with the set's tiny components (both text
encoders, micro-conditioning, Euler), stored in the folder layout of a downloaded SDXL repository."""
import copy
import json

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

from .. import compare, st_io
from . import clip_text, clip_tokenizer, pipeline_common, unet, vae
from .schedulers import EULER_CFG

SEED = 2600


def components(ctx, dtype):
    t = clip_tokenizer.tokenizers(ctx)
    return dict(vae=copy.deepcopy(vae.build(ctx)).to(dtype), text_encoder=copy.deepcopy(clip_text.build_text(ctx)).to(dtype),
                text_encoder_2=copy.deepcopy(clip_text.build_text2(ctx)).to(dtype), tokenizer=t["fast"],
                tokenizer_2=t["fast2"], unet=copy.deepcopy(unet.build("unet_sdxl_tiny", ctx)).to(dtype),
                scheduler=EulerDiscreteScheduler(**EULER_CFG), add_watermarker=False)


def micro_conditioning(ctx):
    """(original_size, crops_coords_top_left) of the set: a 4x larger, off-centre source image."""
    h, w = ctx.p.latent_hw
    return (8 * h, 8 * w), (2 * h, w)


def manual(ctx, x, steps, guidance, height, width):
    """The algorithm by hand with the same components (no pipeline)."""
    c = components(ctx, torch.float32)
    s = c["scheduler"]
    te, te2 = c["text_encoder"], c["text_encoder_2"]
    with torch.no_grad():
        def encode(ids, ids2):
            o1 = te(ids, output_hidden_states=True)
            o2 = te2(ids2, output_hidden_states=True)
            return torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1), o2.text_embeds
        pe, pooled = encode(x["input_ids"], x["input_ids_2"])
        npe, npooled = encode(x["negative_input_ids"], x["negative_input_ids_2"])
        time_ids = x["add_time_ids"]
        s.set_timesteps(steps)
        lat = x["latents"] * s.init_noise_sigma
        out = []
        for t in s.timesteps:
            xin = s.scale_model_input(torch.cat([lat, lat]), t)
            eps = c["unet"](xin, t, encoder_hidden_states=torch.cat([npe, pe]),
                            added_cond_kwargs={"text_embeds": torch.cat([npooled, pooled]),
                                               "time_ids": time_ids}).sample
            eu, ec = eps.chunk(2)
            lat = s.step(eu + guidance * (ec - eu), t, lat).prev_sample
            out.append(lat)
        decoded = c["vae"].decode(lat / c["vae"].config.scaling_factor).sample
    return {"step_latents": torch.stack(out), "decoded": decoded,
            "image": (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)}


def generate(ctx):
    p = ctx.p
    d = ctx.dir("pipeline_sdxl_tiny")
    b, (h, w) = p.batch, p.latent_hw
    prompts, negative = list(p.sdxl_pipeline_prompts), list(p.sdxl_pipeline_negative)
    assert len(prompts) == b == len(negative)
    sources = (("unet", "unet_sdxl_tiny", lambda dd: unet.save_model(unet.build("unet_sdxl_tiny", ctx), dd, {})),
               ("vae", "vae_tiny", lambda dd: unet.save_model(vae.build(ctx), dd, {})),
               ("text_encoder", "clip_text_tiny", lambda dd: clip_text.save_text_model(clip_text.build_text(ctx), dd, {})),
               ("text_encoder_2", "clip_text_proj_tiny/text_encoder_2",
                lambda dd: clip_text.save_text_model(clip_text.build_text2(ctx), dd, {})))
    for sub, case, save in sources:
        if (ctx.out / case / "config.json").exists():
            pipeline_common.link_model(ctx, case, d / sub)
        else:
            (d / sub).mkdir(parents=True, exist_ok=True)
            save(d / sub)
    pipeline_common.write_tokenizer(ctx, d / "tokenizer")
    pipeline_common.write_tokenizer(ctx, d / "tokenizer_2", pad_token="!")
    pipe = StableDiffusionXLPipeline(**components(ctx, torch.float32))
    pipe.set_progress_bar_config(disable=True)
    pipe.save_config(d)
    pipe.scheduler.save_config(d / "scheduler")

    original_size, crops = micro_conditioning(ctx)
    height, width = 2 * h, 2 * w
    g = torch.Generator().manual_seed(ctx.seed(SEED))
    latents = torch.randn(b, 4, h, w, generator=g)
    add_time_ids = torch.tensor([list(original_size + crops + (height, width))] * (2 * b), dtype=torch.float32)
    x = {"input_ids": torch.tensor(clip_tokenizer.encode(ctx, prompts)),
         "input_ids_2": torch.tensor(clip_tokenizer.encode(ctx, prompts, sdxl2=True)),
         "negative_input_ids": torch.tensor(clip_tokenizer.encode(ctx, negative)),
         "negative_input_ids_2": torch.tensor(clip_tokenizer.encode(ctx, negative, sdxl2=True)),
         "num_inference_steps": torch.tensor(p.sdxl_pipeline_steps, dtype=torch.int64), "latents": latents,
         "guidance_scale": torch.tensor(p.sdxl_pipeline_guidance, dtype=torch.float32), "add_time_ids": add_time_ids}
    described = dict(prompts=prompts, negative_prompts=negative, height=height,
                                                          width=width, latents_seed=ctx.seed(SEED))
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(**described))
    args = dict(prompt=prompts, negative_prompt=negative, height=height, width=width,
                num_inference_steps=p.sdxl_pipeline_steps, guidance_scale=p.sdxl_pipeline_guidance,
                original_size=original_size, crops_coords_top_left=crops)
    ctx.write_json(d / "prompts.json", dict(args, target_size=[height, width], output_type=["np", "latent"]))

    def full(pipe_, dtype):
        out, timesteps, first = pipeline_common.run(
            pipe_, dict(args, latents=latents.to(dtype),
                        tensor_inputs=["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"]), dtype)
        neg, pos = first["prompt_embeds"].chunk(2)
        npooled, pooled = first["add_text_embeds"].chunk(2)
        res = {"prompt_embeds": pos, "negative_prompt_embeds": neg, "pooled_prompt_embeds": pooled,
               "negative_pooled_prompt_embeds": npooled}
        res.update(out)
        return res, timesteps, first["add_time_ids"]
    f32, timesteps, time_ids = full(pipe, torch.float32)
    if not torch.equal(time_ids, add_time_ids):
        raise RuntimeError(f"pipeline_sdxl_tiny: add_time_ids {time_ids.tolist()} != the documented {add_time_ids.tolist()}")
    p64 = StableDiffusionXLPipeline(**components(ctx, torch.float64))
    p64.set_progress_bar_config(disable=True)
    f64, _, _ = full(p64, torch.float64)
    reloaded = StableDiffusionXLPipeline.from_pretrained(d, add_watermarker=False)
    reloaded.set_progress_bar_config(disable=True)
    classes = {k: type(v).__name__ for k, v in reloaded.components.items() if v is not None and not isinstance(v, bool)}
    reload_out, _, _ = full(reloaded, torch.float32)
    by_hand = manual(ctx, x, p.sdxl_pipeline_steps, p.sdxl_pipeline_guidance, height, width)
    manual_diff = {k: (by_hand[k] - f32[k]).abs().max().item() for k in by_hand}
    outputs = {"timesteps": timesteps}
    outputs.update(f32)
    st_io.write(d / "outputs.safetensors", outputs, ctx.metadata(**described, dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(**described, dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    reload_diff = pipeline_common.max_abs(f32, reload_out)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries, "manual_loop_vs_pipeline_max_abs": manual_diff,
                                           "reload_from_folder_max_abs": reload_diff})
    if reload_diff != 0 or max(manual_diff.values()) > 1e-5:
        raise RuntimeError(f"pipeline_sdxl_tiny: reload {reload_diff}, manual loop {manual_diff}")
    tol = compare.Tolerances("pipeline_sdxl_tiny")
    tol.add("prompt embeddings (4), step_unet_out", compare.Elementwise(1e-4, 1e-4),
            [(n, f32[n], f64[n]) for n in ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                                            "negative_pooled_prompt_embeds", "step_unet_out")])
    tol.add("step_latents, final_latents", compare.Elementwise(2e-4, 2e-4),
            [(n, f32[n], f64[n]) for n in ("step_latents", "final_latents")])
    tol.add("decoded, image", compare.Elementwise(2e-4, 0), [(n, f32[n], f64[n]) for n in ("decoded", "image")])
    model_index = json.loads((d / "model_index.json").read_text())
    body = f"""
## What

diffusers `StableDiffusionXLPipeline` end-to-end text-to-image sampling with tiny components, stored in diffusers
folder layout so that `StableDiffusionXLPipeline.from_pretrained("pipeline_sdxl_tiny", add_watermarker=False)` (and a
C++ loader) loads it like a downloaded SDXL base repository (checked: reloading the folder and rerunning reproduces
everything with max abs diff {reload_diff}; loaded component classes: {json.dumps(classes)}).

| component | content |
|---|---|
| `model_index.json` | diffusers {ctx.versions['diffusers']} `save_config` of the pipeline |
| `unet/` | `unet_sdxl_tiny` of this set, byte-identical (cross_attention_dim 64 = 32 + 32; add-embedding input 80 = 32 + 6 x 8) |
| `vae/` | `vae_tiny` of this set, byte-identical (scaling_factor 0.18215, no latents_mean/std; vae_scale_factor 2) |
| `text_encoder/` | `clip_text_tiny` of this set (CLIPTextModel, `text_model.*` keys) |
| `text_encoder_2/` | `clip_text_proj_tiny/text_encoder_2` of this set (CLIPTextModelWithProjection, projection 32) |
| `tokenizer/` | tests/fixtures/public/clip_tokenizer/ (pad `<|endoftext|>`) |
| `tokenizer_2/` | the same vocab/merges with `"pad_token": "!"` in tokenizer_config.json / special_tokens_map.json, as SDXL's `tokenizer_2` |
| `scheduler/` | `EulerDiscreteScheduler` with SDXL's scheduler settings: `{json.dumps(EULER_CFG)}` |

## Run

```python
pipe = StableDiffusionXLPipeline(vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet,
                                 EulerDiscreteScheduler(**sdxl_cfg), add_watermarker=False)
pipe(prompt={json.dumps(prompts)}, negative_prompt={json.dumps(negative)}, height={height}, width={width},
     num_inference_steps={p.sdxl_pipeline_steps}, guidance_scale={p.sdxl_pipeline_guidance},
     original_size={original_size}, crops_coords_top_left={crops},   # target_size defaults to (height, width)
     latents=inputs["latents"], output_type="np" | "latent", callback_on_step_end=cb,
     callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "add_text_embeds", "add_time_ids"])
```

Algorithm (re-implemented by hand with the same components: max abs diff vs the pipeline {json.dumps(manual_diff)}):
`prompt_embeds = cat([text_encoder(input_ids).hidden_states[-2], text_encoder_2(input_ids_2).hidden_states[-2]], -1)`,
`pooled = text_encoder_2(input_ids_2).text_embeds` (and the same for the negative prompts: given explicitly, so
`force_zeros_for_empty_prompt` does not apply); micro-conditioning `add_time_ids` = (original_size, crops_coords_top_left,
target_size) = {add_time_ids[0].tolist()} for every row (no negative_* micro-conditioning: the negative rows use the same);
Euler `set_timesteps({p.sdxl_pipeline_steps})`; `x = latents * init_noise_sigma`; per step: UNet on
`scale_model_input(cat([x, x]), t)` with `cat([neg, pos])` embeddings, `text_embeds` = `cat([neg_pooled, pooled])`,
`time_ids` = add_time_ids, `eps = eps_u + {p.sdxl_pipeline_guidance} * (eps_c - eps_u)`, `x = euler.step(eps, t, x).prev_sample`;
then `decoded = vae.decode(x / 0.18215).sample`, `image = (decoded / 2 + 0.5).clamp(0, 1)` as NHWC float32.

Quirk (diffusers {ctx.versions['diffusers']}): with `negative_original_size` / `negative_target_size` given, the pipeline builds
`add_time_ids = cat([negative_add_time_ids, add_time_ids]).repeat(B, 1)`, i.e. rows alternate negative/positive
while the embeddings are `[B negative; B positive]`: for B > 1 the rows pair the wrong time ids. This case does not
pass them (both halves use the same ids).

## Inputs (`inputs.safetensors`)

- `latents` F32[{b}, 4, {h}, {w}] = `randn(generator=Generator().manual_seed({ctx.seed(SEED)}))` (passed as `latents=`)
- `input_ids`, `negative_input_ids` (tokenizer, pad 49407) and `input_ids_2`, `negative_input_ids_2` (tokenizer_2, pad
  `"!"` = 0; a `!` inside a prompt is id 0 too) I64[{b}, 77]: what the pipeline's tokenizers produce
- `add_time_ids` F32[{2 * b}, 6]: the micro-conditioning rows the UNet receives (callback tensor, first B rows negative)
- `guidance_scale` F32[], `num_inference_steps` I64[]; prompt strings in `prompts.json`

## Outputs (`outputs.safetensors`, float32)

- `timesteps` F32[steps] (Euler, leading spacing); `prompt_embeds` / `negative_prompt_embeds` F32[B, 77, 64];
  `pooled_prompt_embeds` / `negative_pooled_prompt_embeds` F32[B, 32]
- `step_latents` F32[steps, B, 4, h, w] (callback_on_step_end; the last one == `final_latents`, the
  `output_type="latent"` result), `step_unet_out` F32[steps, 2B, 4, h, w] (raw UNet output, uncond rows first)
- `decoded` F32[B, 3, H, W] = `vae.decode(final_latents / 0.18215).sample`; `image` F32[B, H, W, 3] in [0, 1]

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same pipeline with every component `.double()` and float64 latents (`output_type="pt"`);
Euler keeps diffusers' float32 sigma table and upcasts the sample to float32 inside `step` for float16 only.

## float32 vs float64 (observed)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

`model_index.json`:

```json
{json.dumps(model_index, indent=1)}
```
"""
    ctx.write_readme("pipeline_sdxl_tiny", body)
    ctx.note("pipeline_sdxl_tiny", f"StableDiffusionXLPipeline (tiny unet/vae/both text encoders, micro-conditioning, Euler "
             f"{p.sdxl_pipeline_steps} steps, CFG {p.sdxl_pipeline_guidance}) end to end in diffusers folder layout; B={b}, "
             f"{height}x{width}", tol)
