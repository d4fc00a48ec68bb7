"""pipeline_sd15_tiny: diffusers StableDiffusionPipeline end to end with the set's tiny components, stored in the
folder layout of a downloaded SD1.5 repository."""
import copy
import json

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from .. import compare, st_io
from . import clip_text, clip_tokenizer, pipeline_common, unet, vae
from .schedulers import DDIM_CFG

SEED = 2300


def components(ctx, dtype):
    t = clip_tokenizer.tokenizers(ctx)
    return dict(vae=copy.deepcopy(vae.build(ctx)).to(dtype), text_encoder=copy.deepcopy(clip_text.build_text(ctx)).to(dtype),
                tokenizer=t["fast"], unet=copy.deepcopy(unet.build("unet_sd15_tiny", ctx)).to(dtype),
                scheduler=DDIMScheduler(**DDIM_CFG), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False)


def manual(ctx, ids, nids, latents, steps, guidance):
    """The algorithm by hand with the same components (no pipeline): must reproduce the pipeline bit-exactly."""
    c = components(ctx, torch.float32)
    s = c["scheduler"]
    with torch.no_grad():
        cond = c["text_encoder"](ids)[0]
        uncond = c["text_encoder"](nids)[0]
        s.set_timesteps(steps)
        x = latents * s.init_noise_sigma
        out = []
        for t in s.timesteps:
            eps = c["unet"](torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
            eu, ec = eps.chunk(2)
            x = s.step(eu + guidance * (ec - eu), t, x, eta=0.0).prev_sample
            out.append(x)
        decoded = c["vae"].decode(x / c["vae"].config.scaling_factor).sample
    return {"step_latents": torch.stack(out), "decoded": decoded,
            "image": (decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)}


def generate(ctx):
    p = ctx.p
    d = ctx.dir("pipeline_sd15_tiny")
    b, (h, w) = p.batch, p.latent_hw
    prompts, negative = list(p.pipeline_prompts), list(p.pipeline_negative)
    assert len(prompts) == b == len(negative)
    for sub, case, save in (("unet", "unet_sd15_tiny", lambda dd: unet.save_model(unet.build("unet_sd15_tiny", ctx), dd, {})),
                            ("vae", "vae_tiny", lambda dd: unet.save_model(vae.build(ctx), dd, {})),
                            ("text_encoder", "clip_text_tiny", lambda dd: clip_text.save_text_model(clip_text.build_text(ctx), dd, {}))):
        if (ctx.out / case / "config.json").exists():
            pipeline_common.link_model(ctx, case, d / sub)
        else:
            (d / sub).mkdir(parents=True, exist_ok=True)
            save(d / sub)
    pipeline_common.write_tokenizer(ctx, d / "tokenizer")
    pipe = StableDiffusionPipeline(**components(ctx, torch.float32))
    pipe.set_progress_bar_config(disable=True)
    pipe.save_config(d)  # model_index.json
    pipe.scheduler.save_config(d / "scheduler")

    g = torch.Generator().manual_seed(ctx.seed(SEED))
    latents = torch.randn(b, 4, h, w, generator=g)
    ids = torch.tensor(clip_tokenizer.encode(ctx, prompts))
    nids = torch.tensor(clip_tokenizer.encode(ctx, negative))
    x = {"input_ids": ids, "negative_input_ids": nids,
         "num_inference_steps": torch.tensor(p.pipeline_steps, dtype=torch.int64), "latents": latents,
         "guidance_scale": torch.tensor(p.pipeline_guidance, dtype=torch.float32)}
    described = dict(prompts=prompts, negative_prompts=negative, height=2 * h,
                                                          width=2 * w, latents_seed=ctx.seed(SEED))
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(**described))
    args = dict(prompt=prompts, negative_prompt=negative, height=2 * h, width=2 * w, num_inference_steps=p.pipeline_steps,
                guidance_scale=p.pipeline_guidance, eta=0.0)
    ctx.write_json(d / "prompts.json", dict(args, output_type=["np", "latent"]))

    def full(pipe_, dtype):
        out, timesteps, first = pipeline_common.run(
            pipe_, dict(args, latents=latents.to(dtype), tensor_inputs=["latents", "prompt_embeds"]), dtype)
        neg, pos = first["prompt_embeds"].chunk(2)
        return dict({"prompt_embeds": pos, "negative_prompt_embeds": neg}, **out), timesteps
    f32, timesteps = full(pipe, torch.float32)
    p64 = StableDiffusionPipeline(**components(ctx, torch.float64))
    p64.set_progress_bar_config(disable=True)
    f64, _ = full(p64, torch.float64)
    reloaded = StableDiffusionPipeline.from_pretrained(d, safety_checker=None, requires_safety_checker=False)
    reloaded.set_progress_bar_config(disable=True)
    classes = {k: type(v).__name__ for k, v in reloaded.components.items() if v is not None}
    reload_out, _ = full(reloaded, torch.float32)
    by_hand = manual(ctx, ids, nids, latents, p.pipeline_steps, p.pipeline_guidance)
    manual_diff = {k: (by_hand[k] - f32[k]).abs().max().item() for k in by_hand}
    outputs = {"timesteps": timesteps}
    outputs.update(f32)
    st_io.write(d / "outputs.safetensors", outputs, ctx.metadata(**described, dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(**described, dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries, "manual_loop_vs_pipeline_max_abs": manual_diff,
                                           "reload_from_folder_max_abs": pipeline_common.max_abs(f32, reload_out)})
    tol = compare.Tolerances("pipeline_sd15_tiny")
    tol.add("prompt_embeds, negative_prompt_embeds, step_unet_out", compare.Elementwise(1e-4, 1e-4),
            [(n, f32[n], f64[n]) for n in ("prompt_embeds", "negative_prompt_embeds", "step_unet_out")])
    tol.add("step_latents, final_latents", compare.Elementwise(2e-4, 2e-4),
            [(n, f32[n], f64[n]) for n in ("step_latents", "final_latents")])
    tol.add("decoded, image", compare.Elementwise(2e-4, 0), [(n, f32[n], f64[n]) for n in ("decoded", "image")])
    model_index = json.loads((d / "model_index.json").read_text())
    body = f"""
## What

diffusers `StableDiffusionPipeline` end-to-end text-to-image sampling with tiny components, stored in diffusers
folder layout so that `StableDiffusionPipeline.from_pretrained("pipeline_sd15_tiny")` (and a C++ loader) loads it
like a downloaded SD1.5 repo (checked: reloading the folder and rerunning reproduces image and every step latent
with max abs diff {pipeline_common.max_abs(f32, reload_out):.3g}; loaded component classes: {json.dumps(classes)}).

| component | content |
|---|---|
| `model_index.json` | written by diffusers {ctx.versions['diffusers']} (`save_config` of the pipeline: safety_checker / feature_extractor / image_encoder `[null, null]`, `requires_safety_checker` false) |
| `unet/` | `unet_sd15_tiny` of this set, byte-identical (`cross_attention_dim` 32 = text hidden size) |
| `vae/` | `vae_tiny` of this set, byte-identical (scaling_factor 0.18215; 2 blocks -> vae_scale_factor 2) |
| `text_encoder/` | `clip_text_tiny` of this set, byte-identical (`text_model.*` key names as in released SD1.5) |
| `tokenizer/` | tests/fixtures/public/clip_tokenizer/ (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json; as in SD1.5's `tokenizer/`) |
| `scheduler/` | `DDIMScheduler` with SD1.5's scheduler settings: `{json.dumps(DDIM_CFG)}` |

(diffusers/transformers 5 `save_pretrained` would write the tokenizer as tokenizer.json + tokenizer_config.json
and the text encoder with un-prefixed keys; the folder instead mirrors the released SD1.5 layout; both load.)

## Run

```python
pipe = StableDiffusionPipeline(vae, text_encoder, tokenizer, unet, DDIMScheduler(**sd15_cfg), safety_checker=None,
                               feature_extractor=None, requires_safety_checker=False)
pipe(prompt={json.dumps(prompts)}, negative_prompt={json.dumps(negative)}, height={2 * h}, width={2 * w},
     num_inference_steps={p.pipeline_steps}, guidance_scale={p.pipeline_guidance}, latents=inputs["latents"], eta=0.0,
     output_type="np" | "latent", callback_on_step_end=cb, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
```

Algorithm (re-implemented by hand with the same components: max abs diff vs the pipeline {json.dumps(manual_diff)}):
`cond = text_encoder(input_ids)[0]`, `uncond = text_encoder(negative_input_ids)[0]` (last_hidden_state, no attention
mask, no clip skip); DDIM `set_timesteps({p.pipeline_steps})` (leading spacing + steps_offset 1 -> `timesteps`);
`x = latents * init_noise_sigma (=1)`; per step: UNet on `cat([x, x])` with `cat([uncond, cond])`,
`eps = eps_u + {p.pipeline_guidance} * (eps_c - eps_u)`, `x = ddim.step(eps, t, x, eta=0).prev_sample` (alpha_prev of the
last step = alphas_cumprod[0], set_alpha_to_one False); then `decoded = vae.decode(x / 0.18215).sample`,
`image = (decoded / 2 + 0.5).clamp(0, 1)` as NHWC float32. DDIM step (eta 0, epsilon): `a_t = alphas_cumprod[t]`,
`a_prev = alphas_cumprod[t - 1000 // steps]` (or alphas_cumprod[0] when negative), `x0 = (x - (1 - a_t) ** 0.5 * eps)
/ a_t ** 0.5`, `x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps`, with diffusers' float32 `alphas_cumprod` table
(also in the float64 run).

## Inputs (`inputs.safetensors`)

- `latents` F32[{b}, 4, {h}, {w}] = `randn(generator=Generator().manual_seed({ctx.seed(SEED)}))` (passed as `latents=`)
- `input_ids`, `negative_input_ids` I64[{b}, 77]: what the pipeline's tokenizer produces for the prompts (SD1.5
  settings, pad 49407; slow+ftfy and transformers 5 agree); `guidance_scale` F32[]; `num_inference_steps` I64[]
- prompt strings: `prompts.json` (and the safetensors metadata)

## Outputs (`outputs.safetensors`, float32)

- `timesteps` I64[steps]; `prompt_embeds` / `negative_prompt_embeds` F32[B, 77, 32] (cond / uncond text embeddings,
  from the callback's `prompt_embeds` = `cat([negative, positive])`)
- `step_latents` F32[steps, B, 4, h, w]: latents after each scheduler step (callback_on_step_end); the last one ==
  `final_latents` (= `output_type="latent"` result, bit-identical)
- `step_unet_out` F32[steps, 2B, 4, h, w]: raw UNet output per step (first B rows uncond, then cond; forward hook)
- `decoded` F32[B, 3, H, W] = `vae.decode(final_latents / 0.18215).sample` (unclamped)
- `image` F32[B, H, W, 3] in [0, 1] = `output_type="np"` result

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same pipeline with every component `.double()` and float64 latents
(`output_type="pt"` so the image is not cast back to float32); the DDIM scheduler keeps diffusers' float32
`alphas_cumprod` table in both runs, and the UNet's sinusoidal timestep embedding is computed in float32 and cast.

## float32 vs float64 (observed)

{compare.table(entries)}

Note how the CFG scale and the DDIM update amplify differences step by step.

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

C++ float64 vs `outputs_f64`: `1e-8*(1+|b|)` (if the scheduler uses the same float32 alphas_cumprod table).

## Quirks

- `clip_skip` with diffusers {ctx.versions['diffusers']} + transformers {ctx.versions['transformers']}: diffusers reaches into
  `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has (AttributeError).
- DDIM with `latents=` given: the pipeline multiplies them by `init_noise_sigma` (1.0 for DDIM) and draws no noise
  (eta 0).

`model_index.json`:

```json
{json.dumps(model_index, indent=1)}
```
"""
    ctx.write_readme("pipeline_sd15_tiny", body)
    ctx.note("pipeline_sd15_tiny", f"StableDiffusionPipeline (tiny unet/vae/text encoder, DDIM {p.pipeline_steps} steps, CFG "
             f"{p.pipeline_guidance}) end to end in diffusers folder layout: per-step latents, image; B={b}, {2 * h}x{2 * w}", tol)
