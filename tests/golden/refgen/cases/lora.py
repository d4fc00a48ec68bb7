"""lora_sd15_tiny: a PEFT LoRA on unet_sd15_tiny set up and saved as diffusers' Diffusion-DPO example does, its
kohya-style twin, outputs with the adapter on / scaled / off and the LoRA gradients."""
import copy
import json
import tempfile

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from .. import compare, st_io
from . import unet as unet_case

SEED = 2400
TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
GRAD_MODULES = ["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
                "down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k",
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_v",
                "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0"]


def build(ctx):
    """(base UNet, LoRA UNet): torch.manual_seed before add_adapter (PEFT's gaussian init: lora_A ~ N(0, 1/r),
    lora_B = 0), then every lora_B overwritten with seeded randn * 0.05 so the LoRA changes the output."""
    p = ctx.p
    base = unet_case.build("unet_sd15_tiny", ctx)
    lora = copy.deepcopy(base)
    lora.requires_grad_(False)
    torch.manual_seed(ctx.seed(SEED))
    lora.add_adapter(LoraConfig(r=p.lora_rank, lora_alpha=p.lora_alpha, init_lora_weights="gaussian",
                                target_modules=TARGETS))
    g = torch.Generator().manual_seed(ctx.seed(SEED + 1))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)
    return base, lora.eval()


def forward(model, x, dtype, scale=None, grads=False):
    m = model.to(dtype)
    f = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in x.items()}
    kw = {"cross_attention_kwargs": {"scale": scale}} if scale is not None else {}
    with torch.set_grad_enabled(grads):
        out = m(f["sample"], f["timestep"], f["encoder_hidden_states"], **kw).sample
    if grads:
        (out * f["grad_output"]).sum().backward()
    return out.detach()


def run(lora, x, dtype):
    m = copy.deepcopy(lora)
    for name, param in m.named_parameters():
        param.requires_grad_("lora_" in name)
    out = {"out_lora": forward(m, x, dtype, grads=True)}
    params = dict(m.named_parameters())
    for mod in GRAD_MODULES:
        for peft, file in (("lora_A", "down"), ("lora_B", "up")):
            out[f"param_grad.unet.{mod}.lora.{file}.weight"] = params[f"{mod}.{peft}.default.weight"].grad.detach().clone()
    out["out_lora_scale_0.5"] = forward(m, x, dtype, scale=0.5)
    m.disable_adapters()
    out["out_base"] = forward(m, x, dtype)
    return out


def kohya_name(module):
    return "lora_unet_" + module.replace(".", "_")


def generate(ctx):
    p = ctx.p
    d = ctx.dir("lora_sd15_tiny")
    base, lora = build(ctx)
    r, alpha = p.lora_rank, p.lora_alpha
    peft_sd = get_peft_model_state_dict(lora)
    unet_lora_state_dict = convert_state_dict_to_diffusers(peft_sd)
    keep_alpha = alpha != r
    metadata = {"r": r, "lora_alpha": alpha, "target_modules": TARGETS} if keep_alpha else None
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(save_directory=tmp, unet_lora_layers=unet_lora_state_dict,
                                                  text_encoder_lora_layers=None, unet_lora_adapter_metadata=metadata)
        file_sd = load_file(f"{tmp}/pytorch_lora_weights.safetensors")
        _, file_meta = st_io.describe(f"{tmp}/pytorch_lora_weights.safetensors")
        # Our writer (same names and bytes, header in insertion order) so the file layout is the documented one.
        st_io.write(d / "pytorch_lora_weights.safetensors", file_sd, file_meta)
    names = list(file_sd)
    peft_to_file = {}
    for k in peft_sd:
        module, ab = k.rsplit(".lora_", 1)
        peft_to_file[f"{module}.lora_{ab.split('.')[0]}.default.weight"] = \
            f"unet.{module}.lora.{'down' if ab.startswith('A') else 'up'}.weight"
    # kohya-style twin: lora_unet_<path with _>.lora_down/up.weight + .alpha
    kohya = {}
    for k, v in file_sd.items():
        module = k[len("unet."):].rsplit(".lora.", 1)[0]
        kind = "lora_down" if k.endswith("lora.down.weight") else "lora_up"
        kohya[f"{kohya_name(module)}.{kind}.weight"] = v
        kohya[f"{kohya_name(module)}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
    st_io.write(d / "kohya_style_lora.safetensors", kohya, {"format": "pt"})

    b, (h, w) = p.batch, p.latent_hw
    g = torch.Generator().manual_seed(ctx.seed(SEED + 2))
    x = {"timestep": torch.tensor(p.lora_timesteps, dtype=torch.int64), "sample": torch.randn(b, 4, h, w, generator=g),
         "encoder_hidden_states": torch.randn(b, p.seq_len, 32, generator=g), "grad_output": torch.randn(b, 4, h, w, generator=g)}
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(input_seed=ctx.seed(SEED + 2)))
    f32 = run(lora, x, torch.float32)
    rerun = run(lora, x, torch.float32)
    f64 = run(lora, x, torch.float64)
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32", lora_rank=r, lora_alpha=alpha))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(dtype_run="float64"))

    # Checks: plain base == adapter off; merged weights; reloading both files into a fresh base UNet.
    plain = forward(copy.deepcopy(base), x, torch.float32)
    merged = copy.deepcopy(lora)
    merged.fuse_lora()
    merged_out = forward(merged, x, torch.float32)
    checks = {"f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32),
              "out_base_vs_plain_base_unet_max_abs": (f32["out_base"] - plain).abs().max().item(),
              "out_lora_vs_merged_weights_max_abs": (f32["out_lora"] - merged_out).abs().max().item()}

    def reload(path, **kw):
        sd, alphas, meta = StableDiffusionPipeline.lora_state_dict(str(path), return_lora_metadata=True, **kw)
        fresh = copy.deepcopy(base)
        StableDiffusionPipeline.load_lora_into_unet(sd, alphas, fresh, metadata=meta)
        return forward(fresh, x, torch.float32), sd, alphas, meta
    out, _, _, meta = reload(d, weight_name="pytorch_lora_weights.safetensors")
    checks["reload_lora_file_max_abs"] = (out - f32["out_lora"]).abs().max().item()
    checks["reload_lora_file_metadata"] = meta
    k_out, k_sd, k_alphas, _ = reload(d, weight_name="kohya_style_lora.safetensors")
    checks["kohya"] = {"loaded": True, "max_abs_vs_out_lora": (k_out - f32["out_lora"]).abs().max().item(),
                       "converted_key_example": sorted(k_sd)[:2], "network_alpha_keys_example": sorted(k_alphas or {})[:2]}
    if keep_alpha:  # what the Diffusion-DPO example's save (no metadata) would lose
        with tempfile.TemporaryDirectory() as tmp:
            StableDiffusionPipeline.save_lora_weights(save_directory=tmp, unet_lora_layers=unet_lora_state_dict,
                                                      text_encoder_lora_layers=None)
            lost, _, _, _ = reload(tmp, weight_name="pytorch_lora_weights.safetensors")
        checks["saved_without_metadata_max_abs_vs_out_lora"] = (lost - f32["out_lora"]).abs().max().item()
    for key in ("reload_lora_file_max_abs",):
        if checks[key] != 0:
            raise RuntimeError(f"lora_sd15_tiny: {key} = {checks[key]}")
    if checks["kohya"]["max_abs_vs_out_lora"] > 1e-5:
        raise RuntimeError(f"lora_sd15_tiny: the kohya-style file loads to other outputs: {checks['kohya']}")
    ctx.write_json(d / "lora_keys.json", {"file_keys": names, "file_metadata": file_meta,
                                          "peft_parameter_name_to_file_key": peft_to_file, "kohya_style": checks["kohya"],
                                          "rank": r, "lora_alpha": alpha, "scaling": alpha / r})
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", dict({"f32_vs_f64": entries}, **checks))
    tol = compare.Tolerances("lora_sd15_tiny")
    tol.add("out_*", compare.Elementwise(1e-4, 1e-4), [(n, f32[n], f64[n]) for n in f32 if n.startswith("out")])
    tol.add("LoRA param grads", compare.MaxNorm(1e-4, 1e-6), [(n, f32[n], f64[n]) for n in f32 if "grad" in n])
    rel_change = ((f32["out_lora"] - f32["out_base"]).norm() / f32["out_base"].norm()).item()
    meta_text = (f"The header's metadata holds `lora_adapter_metadata` = {file_meta.get('lora_adapter_metadata')!r}: "
                 f"with lora_alpha ({alpha:g}) != r ({r}) the file is saved with `unet_lora_adapter_metadata` (the "
                 "Diffusion-DPO example does not pass it; saved without it, diffusers reloads this LoRA with scaling 1 "
                 f"instead of {alpha / r:g}: max abs change of the output "
                 f"{checks.get('saved_without_metadata_max_abs_vs_out_lora', 0):.3g}). A loader takes alpha from this "
                 "metadata (or from the kohya file's `.alpha` tensors) and assumes alpha = r only when neither is there."
                 if keep_alpha else
                 f"Metadata {json.dumps(file_meta)}: no `.alpha` entries and no `lora_adapter_metadata`, exactly as the "
                 "Diffusion-DPO example saves it (lora_alpha = r there), so a loader assumes alpha = rank (scale 1). A "
                 "LoRA trained with lora_alpha != r saved this way loses its alpha unless `unet_lora_adapter_metadata` is "
                 "passed (the other reference set has such a file).")
    body = f"""
## What

A PEFT LoRA on the tiny SD1.5 UNet exactly as diffusers' Diffusion-DPO research example
(`examples/research_projects/diffusion_dpo/train_diffusion_dpo.py`) sets it up and saves it:

```python
unet.requires_grad_(False)
unet.add_adapter(LoraConfig(r={r}, lora_alpha={alpha:g}, init_lora_weights="gaussian",
                            target_modules={TARGETS}))
...
unet_lora_state_dict = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
StableDiffusionPipeline.save_lora_weights(save_directory=..., unet_lora_layers=unet_lora_state_dict,
                                          text_encoder_lora_layers=None{', unet_lora_adapter_metadata=' + json.dumps(metadata) if keep_alpha else ''})
```

- Base weights: `../unet_sd15_tiny/diffusion_pytorch_model.safetensors` + `../unet_sd15_tiny/config.json` of the same
  set (not copied).
- `torch.manual_seed({ctx.seed(SEED)})` before `add_adapter` (PEFT's "gaussian" init: `lora_A ~ N(0, 1/r)`,
  `lora_B = 0`); then every `lora_B` (in `named_parameters()` order) is overwritten with
  `randn(generator=Generator().manual_seed({ctx.seed(SEED + 1)})) * 0.05` so the LoRA changes the output (relative L2
  change of `out` {rel_change:.3g}). {len(names) // 2} adapted Linear layers (to_q/to_k/to_v/to_out.0 of every
  attn1/attn2), rank {r}, lora_alpha {alpha:g}, **scaling alpha/r = {alpha / r:g}**.
- Effective weight: `W' = W + (lora_alpha / r) * lora_up @ lora_down` (checked: the UNet with fused weights gives
  the same output, max abs {checks['out_lora_vs_merged_weights_max_abs']:.2g}).

## `pytorch_lora_weights.safetensors` (diffusers `save_lora_weights`)

{len(names)} tensors, F32. Key names: `unet.<module path>.lora.down.weight` [r, in] ("down" = PEFT lora_A) and
`unet.<module path>.lora.up.weight` [out, r] ("up" = PEFT lora_B): `convert_state_dict_to_diffusers` turns PEFT's
`lora_A`/`lora_B` into diffusers' `lora.down`/`lora.up` and `save_lora_weights` adds the `unet.` prefix; there are
no `.alpha` entries. {meta_text} Example keys: {', '.join(f'`{n}`' for n in names[:2])}. Full list, metadata, rank,
alpha and the PEFT parameter name -> file key map: `lora_keys.json`. Reloading with
`StableDiffusionPipeline.lora_state_dict` + `load_lora_into_unet` into a fresh base UNet reproduces `out_lora` (max abs
{checks['reload_lora_file_max_abs']}).

Kohya-style: `kohya_style_lora.safetensors` holds the same weights as `lora_unet_<path with dots -> _>.lora_down.weight`
/ `.lora_up.weight` plus `.alpha` = {alpha:g} (F32 []) per module (sd-scripts naming for SD1.5 UNets, e.g.
`{kohya_name(GRAD_MODULES[0])}.lora_down.weight`). diffusers' loader converts it: loaded, output max abs diff vs
out_lora {checks['kohya']['max_abs_vs_out_lora']:.3g}.

## Inputs (`inputs.safetensors`)

`Generator().manual_seed({ctx.seed(SEED + 2)})`: `sample` = randn(B,4,H,W), `encoder_hidden_states` = randn(B,{p.seq_len},32),
`grad_output` = randn(B,4,H,W); `timestep` = {list(p.lora_timesteps)}. B={b}, H x W = {h} x {w}.

## Outputs (`outputs.safetensors`, float32)

- `out_lora` = `unet(sample, timestep, encoder_hidden_states).sample` with the adapter active
- `out_lora_scale_0.5` = same with `cross_attention_kwargs={{"scale": 0.5}}` (LoRA delta scaled by 0.5 on top of
  alpha/r)
- `out_base` = with `unet.disable_adapters()` (== the plain base UNet: max abs {checks['out_base_vs_plain_base_unet_max_abs']})
- `param_grad.<file key>` = d/d(LoRA weight) of `sum(out_lora * grad_output)`, named by the key of that weight in
  `pytorch_lora_weights.safetensors` (PEFT parameter `<module>.lora_A.default.weight` <-> file key
  `unet.<module>.lora.down.weight`, `lora_B.default.weight` <-> `.lora.up.weight`)

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: same from a float64 copy (base + LoRA).

## float32 vs float64 (observed)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}
"""
    ctx.write_readme("lora_sd15_tiny", body)
    ctx.note("lora_sd15_tiny", f"PEFT LoRA (r {r}, alpha {alpha:g}, to_q/k/v/out.0) on unet_sd15_tiny as in diffusers' "
             "Diffusion-DPO example: file keys, kohya twin, out on/scaled/off, LoRA grads", tol)
