"""clip_text_tiny (transformers CLIPTextModel in SD1.5's text_encoder structure) and clip_text_proj_tiny
(CLIPTextModelWithProjection in SDXL's text_encoder_2 structure, plus SDXL's encode_prompt over both)."""
import copy
import json
import shutil
import tempfile

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from .. import compare, st_io
from ..models import perturb
from . import clip_tokenizer

TEXT_KWARGS = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 3,
               "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
               "layer_norm_eps": 1e-05, "projection_dim": 32, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
               "attention_dropout": 0.0, "initializer_range": 0.02, "initializer_factor": 1.0}
TEXT2_KWARGS = dict(TEXT_KWARGS, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2, hidden_act="gelu")
TEXT_SEED, TEXT2_SEED = 2000, 2100
TEXT_GRADS = ["embeddings.position_embedding.weight", "encoder.layers.0.self_attn.q_proj.weight",
              "encoder.layers.0.self_attn.v_proj.bias", "encoder.layers.0.layer_norm1.weight",
              "encoder.layers.1.mlp.fc1.weight", "encoder.layers.1.mlp.fc2.weight",
              "encoder.layers.2.self_attn.out_proj.weight", "encoder.layers.2.layer_norm2.bias",
              "final_layer_norm.weight", "final_layer_norm.bias"]


def released_state_dict(model):
    """State dict with the released checkpoint key names: transformers 5's CLIPTextModel dropped the
    `text_model.` prefix that SD1.5's text_encoder/model.safetensors (and transformers 4) have."""
    sd = model.state_dict()
    if isinstance(model, CLIPTextModel):
        sd = {"text_model." + k: v for k, v in sd.items()}
    return {k: v for k, v in sd.items() if not k.endswith("position_ids")}


def save_text_model(model, d, meta):
    """config.json from transformers' save_pretrained, model.safetensors with the released key names."""
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(f"{tmp}/config.json", d / "config.json")
    st_io.write(d / "model.safetensors", released_state_dict(model), dict(meta, format="pt"))
    reloaded = type(model).from_pretrained(d).eval()
    ref = model.state_dict()
    for k, v in reloaded.state_dict().items():
        if not torch.equal(v, ref[k]):
            raise RuntimeError(f"{d}: {k} changed when reloading the folder with from_pretrained")
    return reloaded


def build_text(ctx):
    if "clip_text" not in ctx.cache:
        torch.manual_seed(ctx.seed(TEXT_SEED))
        m = CLIPTextModel(CLIPTextConfig(**TEXT_KWARGS))
        perturb(m, ctx.seed(TEXT_SEED + 1))
        ctx.cache["clip_text"] = m.eval()
    return ctx.cache["clip_text"]


def build_text2(ctx):
    if "clip_text2" not in ctx.cache:
        torch.manual_seed(ctx.seed(TEXT2_SEED))
        m = CLIPTextModelWithProjection(CLIPTextConfig(**TEXT2_KWARGS))
        perturb(m, ctx.seed(TEXT2_SEED + 1))
        ctx.cache["clip_text2"] = m.eval()
    return ctx.cache["clip_text2"]


def resolve(ctx, rows):
    """Caption rows of the set: (text, add_special_tokens, description)."""
    long_text, long_src = clip_tokenizer.long_caption(ctx)
    out = []
    for r in rows:
        if r == "<long>":
            out.append((long_text, True, f"`{long_text}` ({long_src}, truncated to 77 tokens)"))
        elif r == "<long-nospecial>":
            out.append((long_text, False, f"the caption of {long_src} with `add_special_tokens=False`, truncated to 77 "
                                          "(no BOS/EOS)"))
        else:
            out.append((r, True, f"`{r}`" if r else '`""` (empty caption: BOS, EOS, 75 x pad)'))
    return out


def run_text(model, ids, grad_output, dtype):
    m = copy.deepcopy(model).to(dtype)
    o = m(input_ids=ids, output_hidden_states=True)
    out = {"last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output}
    for i, h in enumerate(o.hidden_states):
        out[f"hidden_states.{i}"] = h
    out["clip_skip_1"] = m.final_layer_norm(o.hidden_states[-2])
    (o.last_hidden_state * grad_output.to(dtype)).sum().backward()
    params = dict(m.named_parameters())
    for n in TEXT_GRADS:
        out[f"param_grad.text_model.{n}"] = params[n].grad
    index = torch.unique(ids)
    out["param_grad_rows.text_model.embeddings.token_embedding.weight"] = params["embeddings.token_embedding.weight"].grad[index]
    m49407 = copy.deepcopy(m)
    m49407.eos_token_id = 49407
    with torch.no_grad():
        out["pooler_output.eos_token_id_49407"] = m49407(input_ids=ids).pooler_output
    return {k: v.detach() for k, v in out.items()}


def generate_text(ctx):
    p = ctx.p
    d = ctx.dir("clip_text_tiny")
    model = build_text(ctx)
    reloaded = save_text_model(model, d, ctx.metadata(model="clip_text_tiny", init_seed=ctx.seed(TEXT_SEED),
                                                      perturb_seed=ctx.seed(TEXT_SEED + 1)))
    rows = resolve(ctx, p.clip_text_rows)
    ids = torch.tensor([clip_tokenizer.encode(ctx, [t], add_special_tokens=s)[0] for t, s, _ in rows], dtype=torch.int64)
    g = torch.Generator().manual_seed(ctx.seed(TEXT_SEED + 2))
    grad_output = torch.randn(len(rows), 77, 32, generator=g)
    st_io.write(d / "inputs.safetensors", {"input_ids": ids, "grad_output": grad_output},
                ctx.metadata(grad_output_seed=ctx.seed(TEXT_SEED + 2), captions=[t for t, _, _ in rows],
                             add_special_tokens=[s for _, s, _ in rows]))
    f32 = run_text(model, ids, grad_output, torch.float32)
    rerun = run_text(model, ids, grad_output, torch.float32)
    f64 = run_text(model, ids, grad_output, torch.float64)
    reload_out = run_text(reloaded, ids, grad_output, torch.float32)
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    f32_eager = run_text(eager, ids, grad_output, torch.float32)
    legacy = ids.to(torch.int).argmax(-1)
    by_eos = (ids == 49407).int().argmax(-1)
    outputs = {"param_grad_rows.index": torch.unique(ids), "pooled_index.legacy": legacy.long(),
               "pooled_index.eos_token_id": by_eos.long()}
    outputs.update(f32)
    st_io.write(d / "outputs.safetensors", outputs, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    eager_stats = compare.stats_all(f32, f32_eager)
    worst_eager = max(eager_stats.items(), key=lambda kv: kv[1]["max_abs_over_ref_max"])
    ctx.write_json(d / "f32_vs_f64.json", {
        "f32_vs_f64": entries, "f32_sdpa_vs_f32_eager": eager_stats,
        "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32),
        "reload_from_folder_max_abs": max((f32[n] - reload_out[n]).abs().max().item() for n in f32)})
    tol = compare.Tolerances("clip_text_tiny")
    tol.add("hidden states, clip_skip_1, pooler outputs", compare.Elementwise(1e-4, 1e-4),
            [(n, f32[n], f64[n]) for n in f32 if "grad" not in n])
    tol.add("param grads", compare.MaxNorm(1e-4, 1e-6), [(n, f32[n], f64[n]) for n in f32 if "grad" in n])
    differ_rows = [i for i in range(len(rows)) if legacy[i] != by_eos[i]]
    rows_text = "\n".join(f"  - row {i}: {desc}" for i, (_, _, desc) in enumerate(rows))
    n_params = sum(t.numel() for t in model.parameters())
    body = f"""
## Model

`transformers.CLIPTextModel(CLIPTextConfig(**kwargs))` (SD1.5 `text_encoder` structure: OpenAI CLIP ViT-L/14 text
tower, `quick_gelu`, causal self-attention, final LayerNorm, EOS pooling) with

```python
{json.dumps(TEXT_KWARGS, indent=1)}
```

`config.json` is transformers' own `save_pretrained` output. Parameters: {n_params} (token embedding 49408 x 32).
`attn_implementation`: transformers' default `sdpa` (see the eager comparison below).

Weights: `torch.manual_seed({ctx.seed(TEXT_SEED)})`, construct (transformers' CLIP init), then for every parameter in
`named_parameters()` order `p += randn(p.shape, generator=Generator().manual_seed({ctx.seed(TEXT_SEED + 1)})) * s`,
`s = 0.1*std(p)` (or 0.1 where p is constant: biases 0, LayerNorm 1). `model.safetensors` (metadata `format: pt`)
uses the **released checkpoint key names** `text_model.embeddings.token_embedding.weight`,
`text_model.encoder.layers.{{i}}.self_attn.{{q,k,v,out}}_proj.{{weight,bias}}`, `...layer_norm1/2`, `...mlp.fc1/fc2`,
`text_model.final_layer_norm.*` (as SD1.5's `text_encoder/model.safetensors` and transformers 4.x have them).
Note: **transformers 5 dropped the `text_model.` prefix** from `CLIPTextModel`'s own state_dict and writes
`embeddings.token_embedding.weight` etc. with `save_pretrained`; it still loads the prefixed names (checked:
`CLIPTextModel.from_pretrained(this folder)` reproduces every weight and output bit-exactly). A C++ loader should
accept both spellings. `position_ids` is not stored (non-persistent buffer).

## Inputs (`inputs.safetensors`)

- `input_ids` I64[{len(rows)}, 77], rows (tokenized with tests/fixtures/public/clip_tokenizer, SD1.5 settings
  `padding="max_length", max_length=77, truncation=True`, pad 49407; the slow+ftfy and the transformers 5
  tokenizer give identical ids):
{rows_text}
- `grad_output` F32[{len(rows)}, 77, 32] = `randn(generator=Generator().manual_seed({ctx.seed(TEXT_SEED + 2)}))`

Call: `model(input_ids=input_ids, output_hidden_states=True)` (no attention_mask, as the SD pipelines call it).

## Outputs (`outputs.safetensors`, float32)

- `last_hidden_state` = final_layer_norm(last layer output); `hidden_states.0` = embeddings (token + position),
  `hidden_states.{{i}}` = output of encoder layer i-1 (before the final LayerNorm); `hidden_states.{TEXT_KWARGS['num_hidden_layers'] - 1}` is
  the penultimate one used by SDXL (`hidden_states[-2]`, no final LayerNorm).
- `clip_skip_1` = `final_layer_norm(hidden_states[-2])`: what diffusers' SD1.5 `encode_prompt(clip_skip=1)` builds.
  (diffusers reaches this through `text_encoder.text_model.final_layer_norm`, which **does not exist in
  transformers 5** -> `clip_skip` raises AttributeError with this combination; the value here is computed directly.)
- `pooler_output`: EOS pooling with the config's `eos_token_id = 2` (the released SD1.5/SDXL configs have 2):
  transformers then uses the **legacy rule `argmax(input_ids)`** (position of the largest id; the EOS 49407 is the
  largest id, first occurrence wins). `pooler_output.eos_token_id_49407`: the same model with `eos_token_id = 49407`
  (the newer rule: first position where `input_ids == eos_token_id`, i.e. position 0 when a row has no EOS).
  `pooled_index.legacy` / `pooled_index.eos_token_id` I64[{len(rows)}]: the positions. The two rules agree on every
  tokenizer output with special tokens; they differ in row(s) {differ_rows} (no EOS in the row).
- `param_grad.<name>` = d/d(param) of `sum(last_hidden_state * grad_output)` (names = keys in model.safetensors).
- `param_grad_rows.index` I64[K] = `unique(input_ids)` (sorted) and
  `param_grad_rows.text_model.embeddings.token_embedding.weight` F32[K, 32]: the rows of the (sparse) token-embedding
  gradient for those ids; all other rows are exactly 0.

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same float tensors from `model.double()`.

## float32 vs float64 (observed)

{compare.table(entries)}

sdpa vs eager attention (both float32): worst max abs / max|ref| {worst_eager[1]['max_abs_over_ref_max']:.3g} (`{worst_eager[0]}`).

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

`pooled_index.*` are integers (exact). float64 port vs `outputs_f64`: `|a-b| <= 1e-9*(1+|b|)`.
"""
    ctx.write_readme("clip_text_tiny", body)
    ctx.note("clip_text_tiny", f"transformers CLIPTextModel, SD1.5 text_encoder structure (quick_gelu, hidden 32, 3 layers): "
             f"all hidden states, clip-skip, EOS pooling (both rules), param grads; {len(rows)} captions", tol)


# ---- clip_text_proj_tiny -----------------------------------------------------------------------------------------

def sdxl_pipeline(ctx, dtype=torch.float32):
    """A StableDiffusionXLPipeline from the set's tiny components (text encoders in `dtype`)."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from . import unet, vae
    from .schedulers import EULER_CFG
    t = clip_tokenizer.tokenizers(ctx)
    return StableDiffusionXLPipeline(
        vae=copy.deepcopy(vae.build(ctx)).to(dtype), text_encoder=copy.deepcopy(build_text(ctx)).to(dtype),
        text_encoder_2=copy.deepcopy(build_text2(ctx)).to(dtype), tokenizer=t["fast"], tokenizer_2=t["fast2"],
        unet=copy.deepcopy(unet.build("unet_sdxl_tiny", ctx)).to(dtype), scheduler=EulerDiscreteScheduler(**EULER_CFG))


def run_proj(ctx, ids, ids2, nids, nids2, prompts, negative, dtype):
    te = copy.deepcopy(build_text(ctx)).to(dtype)
    te2 = copy.deepcopy(build_text2(ctx)).to(dtype)
    out = {}
    with torch.no_grad():
        o2 = te2(input_ids=ids2, output_hidden_states=True)
        out["text_embeds"] = o2.text_embeds
        out["last_hidden_state"] = o2.last_hidden_state
        for i, h in enumerate(o2.hidden_states):
            out[f"hidden_states.{i}"] = h
        pipe = sdxl_pipeline(ctx, dtype)
        pe, npe, ppe, nppe = pipe.encode_prompt(list(prompts), device="cpu", num_images_per_prompt=1,
                                                do_classifier_free_guidance=True, negative_prompt=list(negative))
        out.update({"prompt_embeds": pe, "pooled_prompt_embeds": ppe, "negative_prompt_embeds": npe,
                    "negative_pooled_prompt_embeds": nppe})
        o1 = te(input_ids=ids, output_hidden_states=True)
        out["text_encoder.hidden_states.2"] = o1.hidden_states[-2]
        # Independent recomputation of encode_prompt from the two encoders.
        n1 = te(input_ids=nids, output_hidden_states=True)
        n2 = te2(input_ids=nids2, output_hidden_states=True)
        manual = {"prompt_embeds": torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1),
                  "pooled_prompt_embeds": o2.text_embeds,
                  "negative_prompt_embeds": torch.cat([n1.hidden_states[-2], n2.hidden_states[-2]], -1),
                  "negative_pooled_prompt_embeds": n2.text_embeds}
    diff = max((manual[k] - out[k]).abs().max().item() for k in manual)
    return {k: v.detach() for k, v in out.items()}, diff


def generate_proj(ctx):
    p = ctx.p
    d = ctx.dir("clip_text_proj_tiny")
    text_dir = ctx.out / "clip_text_tiny"
    if (text_dir / "model.safetensors").exists():
        for f in ("config.json", "model.safetensors"):
            ctx.link(text_dir / f, d / "text_encoder" / f)
    else:
        save_text_model(build_text(ctx), d / "text_encoder", ctx.metadata(model="clip_text_tiny"))
    te2 = build_text2(ctx)
    save_text_model(te2, d / "text_encoder_2", ctx.metadata(model="clip_text_proj_tiny text_encoder_2",
                                                           init_seed=ctx.seed(TEXT2_SEED), perturb_seed=ctx.seed(TEXT2_SEED + 1)))
    long_text, long_src = clip_tokenizer.long_caption(ctx)
    prompts = [long_text if x == "<long>" else x for x in p.proj_prompts]
    negative = list(p.proj_negative)
    ids = torch.tensor(clip_tokenizer.encode(ctx, prompts))
    ids2 = torch.tensor(clip_tokenizer.encode(ctx, prompts, sdxl2=True))
    nids = torch.tensor(clip_tokenizer.encode(ctx, negative))
    nids2 = torch.tensor(clip_tokenizer.encode(ctx, negative, sdxl2=True))
    ctx.write_json(d / "prompts.json", {"prompt": prompts, "prompt_2": None, "negative_prompt": negative,
                                        "negative_prompt_2": None, "long_prompt_source": long_src})
    described = dict(prompts=prompts, negative_prompts=negative)
    st_io.write(d / "inputs.safetensors", {"input_ids": ids, "input_ids_2": ids2, "negative_input_ids": nids,
                                           "negative_input_ids_2": nids2}, ctx.metadata(**described))
    f32, manual_diff = run_proj(ctx, ids, ids2, nids, nids2, prompts, negative, torch.float32)
    rerun, _ = run_proj(ctx, ids, ids2, nids, nids2, prompts, negative, torch.float32)
    f64, _ = run_proj(ctx, ids, ids2, nids, nids2, prompts, negative, torch.float64)
    if manual_diff != 0:
        raise RuntimeError(f"clip_text_proj_tiny: encode_prompt differs from the two encoders by {manual_diff}")
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(**described, dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(**described, dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries,
                                           "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32),
                                           "encode_prompt_vs_two_encoders_max_abs": manual_diff})
    tol = compare.Tolerances("clip_text_proj_tiny")
    tol.add("all outputs", compare.Elementwise(1e-4, 1e-4), [(n, f32[n], f64[n]) for n in f32])
    bang = [(r, [i for i in range(77) if ids[r, i] != ids2[r, i] and ids2[r, i] != 0 or (ids2[r, i] == 0 and ids[r, i] != 49407)])
            for r in range(len(prompts))]
    bang = [(r, pos) for r, pos in bang if pos]
    body = f"""
## Models

- `text_encoder/`: exactly `clip_text_tiny`'s model of this set (same `config.json`, byte-identical
  `model.safetensors`): CLIPTextModel, quick_gelu, hidden 32, 3 layers.
- `text_encoder_2/`: `transformers.CLIPTextModelWithProjection(CLIPTextConfig(**kwargs))` in SDXL `text_encoder_2`'s
  structure (OpenCLIP ViT-bigG/14 text tower: `gelu`, causal attention, final LayerNorm, EOS pooling,
  `text_projection` Linear without bias):

```python
{json.dumps(TEXT2_KWARGS, indent=1)}
```

Parameters: {sum(t.numel() for t in te2.parameters())}. Weights: `torch.manual_seed({ctx.seed(TEXT2_SEED)})`, construct,
perturb as in clip_text_tiny with `Generator().manual_seed({ctx.seed(TEXT2_SEED + 1)})`. Keys (`text_model.*` +
`text_projection.weight`) are the same in transformers 4 and 5 and in the released SDXL
`text_encoder_2/model.safetensors`. `config.json` = transformers' `save_pretrained` output.

Combined widths: prompt_embeds feature size 32 + 32 = 64 and pooled size 32, which are exactly the
`cross_attention_dim` (64) and text_embeds width (32; 32 + 6*8 = 80 = projection_class_embeddings_input_dim) of
`unet_sdxl_tiny`.

## Inputs

Prompts / negative prompts (also in `prompts.json`): prompt = {json.dumps(prompts, ensure_ascii=False)};
negative_prompt = {json.dumps(negative, ensure_ascii=False)}. The long prompt is {long_src} (truncated to 77 tokens).

`inputs.safetensors` (what `encode_prompt` tokenizes internally; tests/fixtures/public/clip_tokenizer files,
slow+ftfy and transformers 5 agree):
- `input_ids` I64[B,77]: tokenizer (SD1.5 settings, pad 49407) for text_encoder
- `input_ids_2` I64[B,77]: tokenizer_2 = same files with `pad_token="!"` -> **pad id 0**, for text_encoder_2.
  Because `"!"` is then a special token, a `!` inside a prompt is also encoded as id 0 (not BPE `!</w>` 256):
  prompts with `!` exercise that (see clip_tokenizer/README.md); (row, positions) where `input_ids_2` holds such a
  0 that is not padding: {bang}.
- `negative_input_ids`, `negative_input_ids_2`: the same for the negative prompts

## Outputs (`outputs.safetensors`, float32, no grad)

- `text_embeds` = text_encoder_2(input_ids_2).text_embeds = text_projection(pooled); pooled = last_hidden_state at
  `argmax(input_ids_2)` (config eos_token_id 2 -> legacy argmax rule; with "!" = 0 padding the EOS 49407 is the max)
- `last_hidden_state`, `hidden_states.0..{TEXT2_KWARGS['num_hidden_layers']}` of text_encoder_2 (`hidden_states.{TEXT2_KWARGS['num_hidden_layers'] - 1}` = penultimate, no final LN)
- `text_encoder.hidden_states.{TEXT_KWARGS['num_hidden_layers'] - 1}`: text_encoder's penultimate hidden states (input_ids)
- `prompt_embeds` F32[B,77,64], `pooled_prompt_embeds` F32[B,32], `negative_prompt_embeds`,
  `negative_pooled_prompt_embeds`: the 4 return values of diffusers {ctx.versions['diffusers']}
  `StableDiffusionXLPipeline.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
  do_classifier_free_guidance=True, negative_prompt=negative_prompt)` (prompt_2 / negative_prompt_2 default to
  prompt / negative_prompt; clip_skip None), i.e. `prompt_embeds = cat([text_encoder(ids,
  output_hidden_states=True).hidden_states[-2], text_encoder_2(ids_2, output_hidden_states=True).hidden_states[-2]],
  dim=-1)` and `pooled_prompt_embeds = text_encoder_2(ids_2)[0]` (= text_embeds). Recomputed independently from the
  two encoders: max abs diff {manual_diff}. With `negative_prompt=None` SDXL's `force_zeros_for_empty_prompt=True`
  makes both negative tensors exactly zero (not stored); an explicit `""` is encoded normally.

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same from float64 copies of both encoders.

## float32 vs float64 (observed)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

float64 port vs `outputs_f64`: `1e-9*(1+|b|)`.
"""
    ctx.write_readme("clip_text_proj_tiny", body)
    ctx.note("clip_text_proj_tiny", "CLIPTextModelWithProjection (SDXL text_encoder_2: gelu, 4 layers) + SDXL encode_prompt "
             f"prompt_embeds [B,77,64] / pooled; B={len(prompts)}", tol)
