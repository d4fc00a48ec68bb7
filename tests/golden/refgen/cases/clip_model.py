"""clip_tiny: transformers CLIPModel in the structure of the CLIP scorers (PickScore, HPSv2) and the CLIP image
preprocessing of real images."""
import copy
import json
import shutil
import tempfile

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPImageProcessorPil, CLIPModel

from .. import compare, st_io
from ..context import PUBLIC
from ..models import perturb
from . import clip_tokenizer

SEED = 2200
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
IMAGES = PUBLIC / "imagereward_images"
PIL_VS_F64 = "pixel_values (PIL backend) vs float64 re-implementation"
TV_VS_PIL = "pixel_values_torchvision vs pixel_values (PIL backend)"


def config_kwargs(image_size):
    return {
        "text_config": {"vocab_size": 49408, "hidden_size": 16, "intermediate_size": 37, "num_hidden_layers": 2,
                        "num_attention_heads": 2, "max_position_embeddings": 77, "hidden_act": "gelu",
                        "layer_norm_eps": 1e-05, "projection_dim": 24, "bos_token_id": 0, "eos_token_id": 2,
                        "pad_token_id": 1},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "num_channels": 3, "image_size": image_size, "patch_size": 8, "hidden_act": "gelu",
                          "layer_norm_eps": 1e-05, "projection_dim": 24},
        "projection_dim": 24, "logit_scale_init_value": 2.6592}


def load_rgb(name):
    return Image.open(IMAGES / name).convert("RGB")


def processor(size, pil=True):
    cls = CLIPImageProcessorPil if pil else CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, resample=3,
               do_center_crop=True, do_normalize=True, do_rescale=True, rescale_factor=1 / 255,
               image_mean=MEAN, image_std=STD, do_convert_rgb=True)


def pil_path_f64(array, size):
    """The PIL path with float64 arithmetic after the (uint8) resize: resize short side to `size` with PIL bicubic,
    center crop at (H-size)//2, (W-size)//2, x/255, (x-mean)/std. Also OpenAI's crop (offsets rounded)."""
    h, w = array.shape[:2]
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    resized = np.asarray(Image.fromarray(array).resize((nw, nh), Image.BICUBIC))
    out = {}
    for name, top, left in (("transformers", (nh - size) // 2, (nw - size) // 2),
                            ("openai", int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0)))):
        x = resized[top:top + size, left:left + size].astype(np.float64) / 255.0
        x = (x - np.array(MEAN)) / np.array(STD)
        out[name] = (torch.from_numpy(x.transpose(2, 0, 1).copy()), [top, left])
    return out, [nh, nw]


def run(model, x, dtype):
    m = copy.deepcopy(model).to(dtype)
    px = x["pixel_values"].to(dtype)
    with torch.no_grad():
        o = m(input_ids=x["input_ids"], pixel_values=px, attention_mask=x["attention_mask"])
        v = m.vision_model(pixel_values=px)
        t = m.text_model(input_ids=x["input_ids"], attention_mask=x["attention_mask"])
        image_features = m.visual_projection(v.pooler_output)
        text_features = m.text_projection(t.pooler_output)
        # The documented formulas, checked against the forward outputs.
        ie = image_features / image_features.norm(dim=-1, keepdim=True)
        te = text_features / text_features.norm(dim=-1, keepdim=True)
        formula = max((ie - o.image_embeds).abs().max().item(), (te - o.text_embeds).abs().max().item(),
                      (m.logit_scale.exp() * ie @ te.T - o.logits_per_image).abs().max().item())
    out = {"image_embeds": o.image_embeds, "text_embeds": o.text_embeds, "logits_per_image": o.logits_per_image,
           "logits_per_text": o.logits_per_text, "vision_model.last_hidden_state": v.last_hidden_state,
           "vision_model.pooler_output": v.pooler_output, "text_model.last_hidden_state": t.last_hidden_state,
           "text_model.pooler_output": t.pooler_output, "image_features": image_features,
           "text_features": text_features, "logit_scale_exp": m.logit_scale.exp()}
    return {k: v.detach() for k, v in out.items()}, formula


def generate(ctx):
    p = ctx.p
    d = ctx.dir("clip_tiny")
    kwargs = config_kwargs(p.clip_image_size)
    torch.manual_seed(ctx.seed(SEED))
    model = CLIPModel(CLIPConfig(**kwargs)).eval()
    perturb(model, ctx.seed(SEED + 1))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(f"{tmp}/config.json", d / "config.json")
    st_io.write(d / "model.safetensors", model.state_dict(), ctx.metadata(format="pt", init_seed=ctx.seed(SEED),
                                                                          perturb_seed=ctx.seed(SEED + 1)))
    reloaded = CLIPModel.from_pretrained(d).eval()

    size = p.clip_image_size
    px = processor(size)([load_rgb(n) for n in p.clip_images], return_tensors="pt")["pixel_values"]
    (ids, mask) = clip_tokenizer.encode(ctx, list(p.clip_captions), sdxl2=True, padding="longest")
    x = {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "pixel_values": px}
    described = dict(captions=list(p.clip_captions), images=list(p.clip_images))
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(**described))
    f32, formula = run(model, x, torch.float32)
    rerun, _ = run(model, x, torch.float32)
    f64, _ = run(model, x, torch.float64)
    reload_out, _ = run(reloaded, x, torch.float32)
    if max((f32[n] - reload_out[n]).abs().max().item() for n in f32) != 0:
        raise RuntimeError("clip_tiny: reloading the folder changes the outputs")
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(**described, dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(**described, dtype_run="float64"))

    # Preprocessing of real image crops at the standard 224.
    crops, info, pre_stats = {}, [], {}
    pil_px, tv_px, ref64 = [], [], []
    for i, (name, (x0, y0, x1, y1)) in enumerate(p.preprocess_crops):
        arr = np.asarray(load_rgb(name))[y0:y1, x0:x1].copy()
        crops[f"image.{i}"] = torch.from_numpy(arr.astype(np.float32))
        img = Image.fromarray(arr)
        pil_px.append(processor(224)(img, return_tensors="pt")["pixel_values"][0])
        tv_px.append(processor(224, pil=False)(img, return_tensors="pt")["pixel_values"][0])
        paths, resized = pil_path_f64(arr, 224)
        ref64.append(paths["transformers"][0])
        info.append({"file": name, "box_x0_y0_x1_y1": [x0, y0, x1, y1], "raw_hw": list(arr.shape[:2]),
                     "resized_hw": resized, "crop_top_left_transformers": paths["transformers"][1],
                     "crop_top_left_openai": paths["openai"][1],
                     "openai_vs_transformers_pil_max_abs": (paths["openai"][0] - paths["transformers"][0]).abs().max().item()})
    pre = dict(crops)
    pre["pixel_values"] = torch.stack(pil_px)
    pre["pixel_values_torchvision"] = torch.stack(tv_px)
    st_io.write(d / "preprocess.safetensors", pre, ctx.metadata(crops=[list(c) for c in p.preprocess_crops]))
    with tempfile.TemporaryDirectory() as tmp:
        processor(224).save_pretrained(tmp)
        shutil.copyfile(f"{tmp}/preprocessor_config.json", d / "preprocessor_config.json")
    ref64 = torch.stack(ref64)
    pre_stats[PIL_VS_F64] = compare.stats(pre["pixel_values"], ref64)
    pre_stats[TV_VS_PIL] = compare.stats(pre["pixel_values_torchvision"], pre["pixel_values"])

    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries,
                                           "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32),
                                           "formulas_vs_forward_max_abs": formula,
                                           "preprocess": pre_stats, "preprocess_info": info})
    tol = compare.Tolerances("clip_tiny")
    tol.add("model outputs", compare.Elementwise(1e-4, 1e-4), [(n, f32[n], f64[n]) for n in f32])
    tol.add("preprocess pixel_values (bit-exact PIL bicubic)", compare.Elementwise(1e-5, 0),
            [("pixel_values", pre["pixel_values"], ref64)])
    n_tokens = 1 + (size // 8) ** 2
    crops_text = "; ".join(f"{i}: {n} box (x0, y0, x1, y1) = {list(b)}" for i, (n, b) in enumerate(p.preprocess_crops))
    info_text = "; ".join(f"{i}: raw {e['raw_hw']} -> resized {e['resized_hw']}, crop top/left transformers "
                          f"{e['crop_top_left_transformers']}, openai {e['crop_top_left_openai']}, openai-vs-PIL-path max abs "
                          f"{e['openai_vs_transformers_pil_max_abs']:.3g}" for i, e in enumerate(info))
    body = f"""
## Model

`transformers.CLIPModel(CLIPConfig(**kwargs))`, the structure of the CLIP scorers PickScore / HPSv2 (OpenCLIP
ViT-H-14 converted to transformers: `gelu` in both towers; text and vision widths differ, both projected to
`projection_dim`):

```python
{json.dumps(kwargs, indent=1)}
```

Parameters: {sum(t.numel() for t in model.parameters())}. Weights: `torch.manual_seed({ctx.seed(SEED)})`, construct,
perturb every parameter (incl. `logit_scale`, a 0-d parameter: +N(0, 0.1^2)) as in clip_text_tiny with
`Generator().manual_seed({ctx.seed(SEED + 1)})`. `model.safetensors` (format pt) = `state_dict()`; CLIPModel's key
names (`text_model.*`, `vision_model.embeddings.class_embedding`, `vision_model.embeddings.patch_embedding.weight`
(Conv2d, no bias), `vision_model.embeddings.position_embedding.weight`, `vision_model.pre_layrnorm.*` (sic),
`vision_model.encoder.layers.*`, `vision_model.post_layernorm.*`, `visual_projection.weight`,
`text_projection.weight`, `logit_scale`) are the same in transformers 4 and 5. `config.json` = transformers'
`save_pretrained` output. Reload with `CLIPModel.from_pretrained`: bit-exact.

## Inputs (`inputs.safetensors`)

- `pixel_values` F32[{len(p.clip_images)}, 3, {size}, {size}]: tests/fixtures/public/imagereward_images/{', '.join(p.clip_images)}
  (decoded with Pillow, `.convert("RGB")`) through `CLIPImageProcessorPil` with the OpenAI CLIP settings below but
  `shortest_edge = crop = {size}` (already normalised).
- `input_ids` I64[{len(p.clip_captions)}, L], `attention_mask` I64[{len(p.clip_captions)}, L]: captions
  {json.dumps(list(p.clip_captions))} tokenized the way PickScore's processor is called (`padding=True,
  truncation=True, max_length=77`: pad to the longest caption, not to 77) with pad `"!"` (id 0, the OpenCLIP
  convention); the attention mask is passed to the text tower (padding mask combined with the causal mask).

Call: `model(input_ids=..., pixel_values=..., attention_mask=...)`; plus `model.vision_model(pixel_values)`,
`model.text_model(input_ids, attention_mask)`.

## Outputs (`outputs.safetensors`, float32, no grad)

- `image_features` = `visual_projection(vision_model.pooler_output)`, `text_features` =
  `text_projection(text_model.pooler_output)` (unnormalised; what PickScore/HPSv2 then normalise themselves)
- `image_embeds`, `text_embeds` = the features divided by their L2 norm (`CLIPModel.forward` output)
- `logits_per_image` F32[N_img, N_txt] = `logit_scale.exp() * image_embeds @ text_embeds.T`; `logits_per_text` = its
  transpose; `logit_scale_exp` F32[] = `logit_scale.exp()`
- `vision_model.last_hidden_state` F32[N_img, 1 + (S/P)^2 = {n_tokens}, 32] (after the encoder, **no** post_layernorm;
  CLS first), `vision_model.pooler_output` = `post_layernorm(last_hidden_state[:, 0])` (unprojected)
- `text_model.last_hidden_state`, `text_model.pooler_output` (EOS pooling, legacy argmax rule: config eos_token_id 2)

Checked: the formulas above reproduce the forward outputs to max abs {formula:.2g}. Note (transformers 5 API change):
`get_image_features` / `get_text_features` return a `BaseModelOutputWithPooling` whose `pooler_output` is the
**projected** feature; `vision_model.pooler_output` above comes from calling `model.vision_model` directly.

{st_io.tensor_list(d / 'outputs.safetensors')}

## Image preprocessing golden (`preprocess.safetensors`, `preprocessor_config.json`)

Crops of real images (Pillow decode of the webp, `.convert("RGB")`, then `array[y0:y1, x0:x1]`): {crops_text}.
`image.{{i}}` F32[H_i, W_i, 3] = the raw uint8 RGB values (0..255, HWC) of crop i (crops keep the files small and
make the resize non-square).

- `pixel_values` F32[N, 3, 224, 224]: transformers {ctx.versions['transformers']} `CLIPImageProcessorPil` (PIL backend = the
  classic transformers 4.x CLIPImageProcessor) with the standard OpenAI CLIP settings: `size={{"shortest_edge": 224}}`,
  resample BICUBIC (3), `crop_size` 224x224, rescale 1/255, normalise with mean {MEAN}, std {STD}. Steps: short
  side -> 224, long side -> `int(224 * long / short)`; PIL `Image.resize(..., BICUBIC)` on the uint8 image (rounded
  back to uint8); center crop with top = `(H - 224) // 2`, left = `(W - 224) // 2`; `x * (1/255)` -> float32;
  `(x - mean) / std` in float32; CHW.
- `pixel_values_torchvision`: the same settings through transformers 5's default `CLIPImageProcessor`, the
  torchvision backend (torchvision {ctx.versions.get('torchvision')}): `resize` with antialias bicubic on the uint8
  tensor and a fused normalisation. It is **not** identical to the PIL path (different bicubic resampler).

Observed: pixel_values (PIL backend) vs a float64 re-implementation of the steps after the PIL resize: max abs
{pre_stats[PIL_VS_F64]['max_abs']:.3g} (values up to {pre_stats[PIL_VS_F64]['ref_max_abs']:.3g});
pixel_values_torchvision vs pixel_values: max abs {pre_stats[TV_VS_PIL]['max_abs']:.3g}.
Per image: {info_text}. OpenAI's own `clip.load` preprocess (torchvision `Resize` on the PIL image + `CenterCrop`
that rounds the offset) equals the PIL path except where `(W - 224)` or `(H - 224)` is odd, where it crops one
pixel further (column "openai").

## float32 vs float64 (observed, model)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

- `pixel_values` for a port with a different bicubic implementation: off by a few uint8 steps after resizing (one
  step = 1/255/std ~ 0.015): compare with `max|a-b| <= 0.1` and mean abs <= 0.01, or against
  `pixel_values_torchvision` for torch-based resizing.
"""
    ctx.write_readme("clip_tiny", body)
    ctx.note("clip_tiny", f"transformers CLIPModel (PickScore/HPSv2 style; text 16 / vision 32 wide, proj 24, image {size}): "
             f"embeds, logits; CLIP image preprocessing of real images", tol)
