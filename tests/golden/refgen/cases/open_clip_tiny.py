"""open_clip_tiny: an open_clip ViT CLIP (the architecture of HPSv2's ViT-H-14) with open_clip's own key names, and
its embeddings for real images and captions: what a C++ HPSv2 loader maps its keys against."""
import copy
import json

import open_clip
import torch
from safetensors.torch import load_file

from .. import compare, st_io
from ..models import perturb
from .clip_model import load_rgb

SEED = 2700


def config(image_size):
    """open_clip's model-config JSON format (as open_clip/model_configs/ViT-H-14.json), tiny widths."""
    return {"embed_dim": 24,
            "vision_cfg": {"image_size": image_size, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2}}


def build(ctx):
    if "open_clip" not in ctx.cache:
        cfg = config(ctx.p.open_clip_image_size)
        torch.manual_seed(ctx.seed(SEED))
        model = open_clip.CLIP(**cfg, quick_gelu=False)
        perturb(model, ctx.seed(SEED + 1))
        ctx.cache["open_clip"] = (model.eval(), cfg)
    return ctx.cache["open_clip"]


def run(model, pixels, text, dtype):
    m = copy.deepcopy(model).to(dtype)
    taps = {}
    hooks = [m.visual.transformer.register_forward_hook(lambda _m, _i, o: taps.__setitem__("visual.transformer", o)),
             m.transformer.register_forward_hook(lambda _m, _i, o: taps.__setitem__("transformer", o))]
    with torch.no_grad():
        image_features = m.encode_image(pixels.to(dtype))
        text_features = m.encode_text(text)
        ie = image_features / image_features.norm(dim=-1, keepdim=True)
        te = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = m.logit_scale.exp() * ie @ te.T
        ref_logits, _ = m.get_logits(pixels.to(dtype), text)
    for h in hooks:
        h.remove()
    out = {"image_features": image_features, "text_features": text_features, "image_embeds": ie, "text_embeds": te,
           "logits_per_image": logits, "cosine": ie @ te.T, "logit_scale_exp": m.logit_scale.exp(),
           "visual.transformer": taps["visual.transformer"], "transformer": taps["transformer"]}
    return {k: v.detach() for k, v in out.items()}, (logits - ref_logits).abs().max().item()


def generate(ctx):
    p = ctx.p
    d = ctx.dir("open_clip_tiny")
    model, cfg = build(ctx)
    st_io.write(d / "open_clip_model.safetensors", model.state_dict(),
                ctx.metadata(format="pt", init_seed=ctx.seed(SEED), perturb_seed=ctx.seed(SEED + 1)))
    ctx.write_json(d / "open_clip_config.json", dict(cfg, quick_gelu=False))
    size = p.open_clip_image_size
    preprocess = open_clip.image_transform(size, is_train=False)
    pixels = torch.stack([preprocess(load_rgb(n)) for n in p.open_clip_images])
    text = open_clip.get_tokenizer("ViT-H-14")(list(p.open_clip_captions))
    x = {"pixel_values": pixels, "input_ids": text}
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(images=list(p.open_clip_images), captions=list(p.open_clip_captions)))
    f32, logits_check = run(model, pixels, text, torch.float32)
    f64, _ = run(model, pixels, text, torch.float64)
    reloaded = open_clip.CLIP(**cfg, quick_gelu=False).eval()
    reloaded.load_state_dict(load_file(d / "open_clip_model.safetensors"), strict=True)
    reload_out, _ = run(reloaded, pixels, text, torch.float32)
    reload_diff = max((reload_out[k] - f32[k]).abs().max().item() for k in f32)
    if reload_diff != 0 or logits_check > 1e-6:
        raise RuntimeError(f"open_clip_tiny: reload {reload_diff}, get_logits {logits_check}")
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries, "reload_from_file_max_abs": reload_diff,
                                           "get_logits_vs_formula_max_abs": logits_check})
    tol = compare.Tolerances("open_clip_tiny")
    tol.add("all outputs", compare.Elementwise(1e-4, 1e-4), [(n, f32[n], f64[n]) for n in f32])
    sd = model.state_dict()
    keys = "\n".join(f"  - `{k}` {list(v.shape)}" for k, v in sd.items() if ".resblocks.1." not in k)
    n_vis = 1 + (size // 8) ** 2
    body = f"""
## Model

`open_clip.CLIP(**cfg, quick_gelu=False)` (open_clip {ctx.versions.get('open_clip_torch')}) with `open_clip_config.json` =

```json
{json.dumps(cfg, indent=1)}
```

This is the architecture of HPSv2 (`ViT-H-14`: GELU, `head_width` 80 there, 8 here; learnable positional
embeddings, CLS-token pooling with `ln_post` after pooling, text pooling at `argmax(text)` = the EOT position, causal
text attention), at tiny widths. Parameters: {sum(v.numel() for v in model.parameters())}. Weights:
`torch.manual_seed({ctx.seed(SEED)})`, construct (open_clip's init), perturb every parameter as in clip_text_tiny with
`Generator().manual_seed({ctx.seed(SEED + 1)})`. `open_clip_model.safetensors` = `state_dict()` with **open_clip's key
names** (what HPSv2's `HPS_v2_compressed.pt` / open_clip checkpoints hold; `load_state_dict(strict=True)` of a fresh
model reproduces every output bit-exactly). The layer-1 keys repeat layer 0's:

{keys}

Layout differences from transformers' CLIPModel that a key mapping must handle:
- `visual.proj` [width, embed_dim] and `text_projection` [width, embed_dim] are **matrices applied as `x @ proj`**
  (transformers: `Linear` weights [embed_dim, width], applied as `x @ W.T`).
- Attention is `nn.MultiheadAttention`: `attn.in_proj_weight` [3*width, width] / `attn.in_proj_bias` [3*width] hold
  q, k, v stacked in that order; `attn.out_proj.*` is the output projection.
- `visual.conv1` (no bias) = patch embedding; `visual.class_embedding` [width]; `visual.positional_embedding`
  [1 + (S/P)^2, width]; `visual.ln_pre` / `visual.ln_post`; text `positional_embedding` [77, width], `ln_final`;
  MLP `mlp.c_fc` / `mlp.c_proj`; `ln_1` / `ln_2` around attention / MLP; `logit_scale` 0-d.

## Inputs (`inputs.safetensors`)

- `pixel_values` F32[{len(p.open_clip_images)}, 3, {size}, {size}]: tests/fixtures/public/imagereward_images/{', '.join(p.open_clip_images)}
  (`.convert("RGB")`) through `open_clip.image_transform({size}, is_train=False)` (resize shortest side to {size}, bicubic,
  center crop, ToTensor, OpenAI mean/std normalisation), what HPSv2's `preprocess_val` does at its size
- `input_ids` I64[{len(p.open_clip_captions)}, 77]: `open_clip.get_tokenizer("ViT-H-14")` of {json.dumps(list(p.open_clip_captions))}
  (open_clip layout: BOS, ids, EOS 49407, zero padding)

## Outputs (`outputs.safetensors`, float32, no grad)

- `image_features` = `model.encode_image(pixel_values)`, `text_features` = `model.encode_text(input_ids)` (unnormalised)
- `image_embeds`, `text_embeds` = L2-normalised; `cosine` = `image_embeds @ text_embeds.T` (HPSv2's score is the
  diagonal of this for matching image/caption pairs); `logits_per_image` = `logit_scale.exp() * cosine`
  (= `model.get_logits(...)[0]`, max abs {logits_check:.2g}); `logit_scale_exp`
- `visual.transformer` F32[N_img, {n_vis}, 32] and `transformer` F32[N_txt, 77, 16]: outputs of the two transformer stacks
  (batch first; before `ln_post` / `ln_final`)

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same from a float64 copy.

## float32 vs float64 (observed)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}
"""
    ctx.write_readme("open_clip_tiny", body)
    ctx.note("open_clip_tiny", f"open_clip ViT CLIP (HPSv2's ViT-H-14 architecture, tiny widths, image {size}) with open_clip "
             "key names: image/text features, embeddings, logits for real images and captions", tol)
