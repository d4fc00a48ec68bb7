"""vae_tiny: diffusers AutoencoderKL encode (posterior) / decode / reconstruction and intermediates."""
import copy
import json

import torch
from diffusers import AutoencoderKL

from .. import compare, st_io
from ..models import perturb
from .unet import save_model

KWARGS = {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
          "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "block_out_channels": [32, 64],
          "layers_per_block": 1, "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 8, "sample_size": 32,
          "scaling_factor": 0.18215}
SEED = 1300
ENCODE_TAPS = ["encoder.down_blocks.0", "encoder.down_blocks.1", "encoder.mid_block", "encoder.conv_out", "quant_conv"]
DECODE_TAPS = ["post_quant_conv", "decoder.conv_in", "decoder.mid_block"]
MAIN = ["posterior_mean", "posterior_logvar", "posterior_std", "decoded", "reconstruction"]


def build(ctx):
    if "vae" not in ctx.cache:
        torch.manual_seed(ctx.seed(SEED))
        vae = AutoencoderKL(**KWARGS)
        perturb(vae, ctx.seed(SEED + 1))
        ctx.cache["vae"] = vae.eval()
    return ctx.cache["vae"]


def run(vae, image, latents, dtype):
    m = copy.deepcopy(vae).to(dtype)
    taps, handles = {}, []
    modules = dict(m.named_modules())
    for name in ENCODE_TAPS + DECODE_TAPS:
        def hook(_m, _i, out, name=name):
            taps.setdefault(name, (out[0] if isinstance(out, tuple) else out).detach().clone())
        handles.append(modules[name].register_forward_hook(hook))
    with torch.no_grad():
        dist = m.encode(image.to(dtype)).latent_dist
        out = {"posterior_mean": dist.mean, "posterior_logvar": dist.logvar, "posterior_std": dist.std}
        out["decoded"] = m.decode(latents.to(dtype)).sample
        for h in handles:
            h.remove()
        out["reconstruction"] = m(image.to(dtype), sample_posterior=False).sample
    for name in ENCODE_TAPS + DECODE_TAPS:
        out["inter." + name] = taps[name]
    return out


def generate(ctx):
    p = ctx.p
    d = ctx.dir("vae_tiny")
    vae = build(ctx)
    save_model(vae, d, ctx.metadata(model="vae_tiny", init_seed=ctx.seed(SEED), perturb_seed=ctx.seed(SEED + 1)))
    b, (h, w) = p.batch, p.latent_hw
    g = torch.Generator().manual_seed(ctx.seed(SEED + 2))
    image = torch.rand(b, 3, 2 * h, 2 * w, generator=g) * 2 - 1
    latents = torch.randn(b, 4, h, w, generator=g)
    st_io.write(d / "inputs.safetensors", {"image": image, "latents": latents}, ctx.metadata(input_seed=ctx.seed(SEED + 2)))
    f32 = run(vae, image, latents, torch.float32)
    rerun = run(vae, image, latents, torch.float32)
    f64 = run(vae, image, latents, torch.float64)
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", {n: f64[n] for n in MAIN}, ctx.metadata(dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries,
                                           "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32)})
    tol = compare.Tolerances("vae_tiny")
    tol.add("all outputs and intermediates", compare.Elementwise(1e-4, 1e-4), [(n, f32[n], f64[n]) for n in f32])
    n_params = sum(t.numel() for t in vae.parameters())
    body = f"""
## Model

`AutoencoderKL(**kwargs)`:

```python
{json.dumps(KWARGS, indent=1)}
```

`config.json` = diffusers `save_config` output. Parameters: {n_params}. Encoder mid-block attention has 1 head of
dim 64 (attention_head_dim defaults to block_out_channels[-1]). use_quant_conv / use_post_quant_conv = True
(defaults). vae_scale_factor = 2 ** (len(block_out_channels) - 1) = 2: an image of H x W has latents of H/2 x W/2.

Weights: `torch.manual_seed({ctx.seed(SEED)})`, construct, then perturb every parameter exactly as in unet_sd15_tiny
(`p += randn*0.1*std(p)` or `0.1` for constant tensors, generator seed {ctx.seed(SEED + 1)}).

## Inputs

Generator seed {ctx.seed(SEED + 2)}: `image = rand(B,3,2h,2w)*2-1` (uniform in [-1,1)), then `latents = randn(B,4,h,w)`.
B={b}, h x w = {h} x {w}.

{st_io.tensor_list(d / 'inputs.safetensors')}

## Outputs (`outputs.safetensors`, float32, all under torch.no_grad)

- `posterior_mean`, `posterior_logvar`, `posterior_std` = `vae.encode(image).latent_dist` .mean/.logvar/.std
  (logvar is clamped to [-30, 20] by diffusers; moments = quant_conv(encoder(image)) split in 2 along C)
- `decoded` = `vae.decode(latents).sample` (latents are fed as-is: NOT divided by scaling_factor)
- `reconstruction` = `vae(image, sample_posterior=False).sample` = decode(posterior mean)
- `inter.encoder.*` / `inter.quant_conv` from encode(image); `inter.post_quant_conv` / `inter.decoder.*` from
  decode(latents) (forward hooks, first call)

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same from a float64 run (`vae.double()`, inputs cast), F64, for {', '.join(f'`{n}`' for n in MAIN)}.

## float32 vs float64 (observed)

{compare.table(entries)}

Full table: `f32_vs_f64.json`.

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

float64 port vs outputs_f64: `1e-9*(1+|b|)`.
"""
    ctx.write_readme("vae_tiny", body)
    ctx.note("vae_tiny", f"AutoencoderKL (32,64), latent 4: posterior mean/logvar/std, decode(latents), reconstruction, "
             f"intermediates; B={b}, image {2 * h}x{2 * w}", tol)
