"""unet_sd15_tiny / unet_sdxl_tiny: diffusers UNet2DConditionModel forward, input and parameter gradients and
intermediates, in float32 and float64."""
import copy
import json
import math

import torch
from diffusers import UNet2DConditionModel

from .. import compare, st_io
from ..models import perturb

SD15_KWARGS = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 32, 64, 64], "layers_per_block": 2, "norm_num_groups": 8,
    "attention_head_dim": 2, "cross_attention_dim": 32, "use_linear_projection": False,
}
SDXL_KWARGS = {
    "sample_size": 16, "in_channels": 4, "out_channels": 4, "flip_sin_to_cos": True, "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [32, 64, 64], "layers_per_block": 2, "transformer_layers_per_block": [1, 2, 2],
    "attention_head_dim": [2, 4, 4], "cross_attention_dim": 64, "use_linear_projection": True,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 80, "norm_num_groups": 8, "upcast_attention": False,
}

SD15_GRADS = [
    "conv_in.weight", "time_embedding.linear_1.weight", "down_blocks.0.attentions.0.proj_in.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
    "down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight", "mid_block.resnets.0.conv1.weight",
    "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight", "up_blocks.1.resnets.2.conv_shortcut.weight",
    "up_blocks.3.attentions.2.proj_out.weight", "conv_norm_out.weight", "conv_out.weight", "conv_out.bias",
]
SDXL_GRADS = [
    "conv_in.weight", "time_embedding.linear_1.weight", "add_embedding.linear_1.weight",
    "add_embedding.linear_2.weight", "down_blocks.1.attentions.0.proj_in.weight",
    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    "down_blocks.1.attentions.0.transformer_blocks.1.attn2.to_k.weight",
    "down_blocks.1.attentions.0.transformer_blocks.1.ff.net.0.proj.weight", "mid_block.resnets.0.conv1.weight",
    "mid_block.attentions.0.transformer_blocks.1.attn1.to_out.0.weight",
    "up_blocks.0.resnets.2.conv_shortcut.weight", "up_blocks.1.attentions.2.proj_out.weight",
    "up_blocks.2.resnets.0.conv_shortcut.weight", "conv_out.weight",
]
SD15_INTER = ["time_proj", "time_embedding", "down_blocks.0.resnets.0", "down_blocks.0.attentions.0", "down_blocks.0",
              "down_blocks.1", "down_blocks.2", "down_blocks.3", "mid_block", "up_blocks.0", "up_blocks.1",
              "up_blocks.2", "up_blocks.3"]
SDXL_INTER = ["time_proj", "time_embedding", "add_time_proj", "add_embedding", "down_blocks.0",
              "down_blocks.1.resnets.0", "down_blocks.1.attentions.0", "down_blocks.1", "down_blocks.2", "mid_block",
              "up_blocks.0", "up_blocks.1", "up_blocks.2"]
F64_INTER = {"time_proj", "time_embedding", "add_time_proj", "add_embedding", "emb"}

SPECS = {
    "unet_sd15_tiny": dict(kwargs=SD15_KWARGS, grads=SD15_GRADS, inter=SD15_INTER, seed=1000, xdim=32, sdxl=False),
    "unet_sdxl_tiny": dict(kwargs=SDXL_KWARGS, grads=SDXL_GRADS, inter=SDXL_INTER, seed=1100, xdim=64, sdxl=True),
}


def build(case, ctx):
    """The case's model (default init under the set's seed, then perturbed), cached for later cases."""
    key = ("unet", case)
    if key not in ctx.cache:
        spec = SPECS[case]
        torch.manual_seed(ctx.seed(spec["seed"]))
        unet = UNet2DConditionModel(**spec["kwargs"])
        perturb(unet, ctx.seed(spec["seed"] + 1))
        ctx.cache[key] = unet.eval()
    return ctx.cache[key]


def save_model(unet, d, meta):
    """config.json (diffusers' save_config) and diffusion_pytorch_model.safetensors (state_dict, F32)."""
    unet.save_config(d)
    st_io.write(d / "diffusion_pytorch_model.safetensors", unet.state_dict(), dict(meta, format="pt"))


def sinusoid_f64(module):
    """A Timesteps.forward computing the sinusoid in float64 (diffusers always uses float32)."""
    def forward(timesteps):
        half = module.num_channels // 2
        exponent = -math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - module.downscale_freq_shift)
        emb = timesteps[:, None].double() * torch.exp(exponent)[None, :] * module.scale
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
        if module.flip_sin_to_cos:
            emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
        return emb
    return forward


def run(unet, inputs, spec, dtype, exact_sinusoid=False):
    """Forward + backward of sum(out * grad_output); returns every output tensor of the case."""
    model = copy.deepcopy(unet).to(dtype)
    if exact_sinusoid:
        model.time_proj.forward = sinusoid_f64(model.time_proj)
        if spec["sdxl"]:
            model.add_time_proj.forward = sinusoid_f64(model.add_time_proj)
    x = {k: (v.detach().to(dtype).clone() if v.is_floating_point() else v.clone()) for k, v in inputs.items()}
    leaves = ["sample", "encoder_hidden_states"] + (["text_embeds"] if spec["sdxl"] else [])
    for k in leaves:
        x[k].requires_grad_(True)
    taps, handles = {}, []
    modules = dict(model.named_modules())
    for name in spec["inter"]:
        def hook(_m, _i, out, name=name):
            taps[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        handles.append(modules[name].register_forward_hook(hook))

    def emb_hook(_m, args, kwargs):  # what the resnets receive: time_embedding (+ add_embedding)
        taps.setdefault("emb", (args[1] if len(args) > 1 else kwargs["temb"]).detach().clone())
    handles.append(modules["down_blocks.0.resnets.0"].register_forward_pre_hook(emb_hook, with_kwargs=True))
    kw = {}
    if spec["sdxl"]:
        kw["added_cond_kwargs"] = {"text_embeds": x["text_embeds"], "time_ids": x["time_ids"]}
    out = model(x["sample"], x["timestep"], x["encoder_hidden_states"], **kw).sample
    (out * x["grad_output"]).sum().backward()
    for h in handles:
        h.remove()
    params = dict(model.named_parameters())
    result = {"out": out.detach()}
    for k in leaves:
        result["grad." + k] = x[k].grad.detach()
    for n in spec["grads"]:
        result["param_grad." + n] = params[n].grad.detach().clone()
    for n in spec["inter"] + ["emb"]:
        result["inter." + n] = taps[n]
    return result


def make_inputs(case, ctx):
    spec, p = SPECS[case], ctx.p
    b, (h, w) = p.batch, p.latent_hw
    g = torch.Generator().manual_seed(ctx.seed(spec["seed"] + 2))
    x = {"timestep": torch.tensor(p.sdxl_timesteps if spec["sdxl"] else p.unet_timesteps, dtype=torch.int64)}
    x["sample"] = torch.randn(b, 4, h, w, generator=g)
    x["encoder_hidden_states"] = torch.randn(b, p.seq_len, spec["xdim"], generator=g)
    if spec["sdxl"]:
        x["text_embeds"] = torch.randn(b, 32, generator=g)
        x["time_ids"] = torch.tensor(p.sdxl_time_ids, dtype=torch.float32)
    x["grad_output"] = torch.randn(b, 4, h, w, generator=g)
    assert len(x["timestep"]) == b
    return x


def generate(ctx, case):
    spec, p = SPECS[case], ctx.p
    d = ctx.dir(case)
    unet = build(case, ctx)
    meta = ctx.metadata(model=case, init_seed=ctx.seed(spec["seed"]), perturb_seed=ctx.seed(spec["seed"] + 1))
    save_model(unet, d, meta)
    inputs = make_inputs(case, ctx)
    st_io.write(d / "inputs.safetensors", inputs, ctx.metadata(input_seed=ctx.seed(spec["seed"] + 2)))

    f32 = run(unet, inputs, spec, torch.float32)
    rerun = run(unet, inputs, spec, torch.float32)
    f64 = run(unet, inputs, spec, torch.float64)
    f64x = run(unet, inputs, spec, torch.float64, exact_sinusoid=True)
    f64_names = [n for n in f64 if not n.startswith("inter.") or n[6:] in F64_INTER]
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", {n: f64[n] for n in f64_names},
                ctx.metadata(dtype_run="float64 (sinusoid embedding in float32 as diffusers does)"))

    entries = compare.stats_all(f32, f64, f64_names)
    exact = compare.stats_all(f32, f64x, ["out", "inter.time_proj", "inter.emb"])
    ctx.write_json(d / "f32_vs_f64.json", {
        "f32_vs_f64": entries,
        "f64_vs_f64exact": compare.stats_all(f64, f64x, list(f32)),
        "f32_vs_f64exact": compare.stats_all(f32, f64x, list(f32)),
        "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32)})

    tol = compare.Tolerances(case)
    tol.add("out, inter.*", compare.Elementwise(1e-4, 1e-4),
            [(n, f32[n], f64[n]) for n in f64_names if n == "out" or n.startswith("inter.")])
    tol.add("grad.*, param_grad.*", compare.MaxNorm(1e-4, 1e-6),
            [(n, f32[n], f64[n]) for n in f64_names if "grad." in n])

    b, (h, w) = p.batch, p.latent_hw
    n_params = sum(t.numel() for t in unet.parameters())
    show = [n for n in f64_names if not n.startswith("param_grad.")][:4] + \
           [n for n in f64_names if n.startswith("param_grad.")] + [n for n in f64_names if n.startswith("inter.")]
    sdxl = spec["sdxl"]
    inputs_text = (
        f"Drawn from `torch.Generator().manual_seed({ctx.seed(spec['seed'] + 2)})` in this order: "
        f"`sample = randn(B,4,H,W)`, `encoder_hidden_states = randn(B,{p.seq_len},{spec['xdim']})`, "
        + ("`text_embeds = randn(B,32)`, " if sdxl else "")
        + f"`grad_output = randn(B,4,H,W)`; `timestep` fixed = {list(inputs['timestep'].tolist())} (int64)"
        + (f"; `time_ids` fixed (F32) = {[list(r) for r in p.sdxl_time_ids]}" if sdxl else "") + ".\n"
        + "Call: `unet(sample, timestep, encoder_hidden_states"
        + (", added_cond_kwargs={'text_embeds':..., 'time_ids':...}" if sdxl else "") + ").sample`.\n\n"
        + f"B={b}, H={h}, W={w}, sequence length {p.seq_len}.")
    inter_text = ("`inter.<module>` = output of that module (forward hook; first element for tuple outputs, i.e. the "
                  "hidden states of down blocks without the residual tuple); `inter.time_proj` = sinusoidal "
                  "embedding (float32); `inter.time_embedding` = MLP output; "
                  + ("`inter.add_time_proj` = sinusoid of `time_ids.flatten()` [B*6,8]; `inter.add_embedding` = aug_emb; "
                     "`inter.emb` = time_embedding + add_embedding" if sdxl else "`inter.emb` = time_embedding output")
                  + " (what the resnets receive)")
    body = f"""
## Model

`UNet2DConditionModel(**kwargs)` with kwargs (everything else default):

```python
{json.dumps(spec['kwargs'], indent=1)}
```

`config.json` is diffusers' own `save_config` output (all resolved defaults; written by this diffusers version,
so it may hold keys older versions do not know: a config parser ignores unknown keys). Parameters: {n_params}.
Note: `attention_head_dim` is (diffusers' naming quirk) the **number of heads** per block (num_attention_heads is
None -> falls back to attention_head_dim). Attention: diffusers' default processor (`AttnProcessor2_0`,
`F.scaled_dot_product_attention`, scale head_dim^-0.5).

Weights: `torch.manual_seed({ctx.seed(spec['seed'])})`, construct the model (default PyTorch/diffusers init), then for every
parameter in `named_parameters()` order: `p += randn(p.shape, generator=Generator().manual_seed({ctx.seed(spec['seed'] + 1)})) * s`
with `s = 0.1*std(p)` (or `s = 0.1` when p is constant, i.e. GroupNorm/LayerNorm weight=1 / bias=0). No tensor is
zero or constant afterwards. `diffusion_pytorch_model.safetensors` = `state_dict()` (F32, diffusers key names).

## Inputs (`inputs.safetensors`)

{inputs_text}

{st_io.tensor_list(d / 'inputs.safetensors')}

## Outputs (`outputs.safetensors`, float32 run)

- `out` = forward(...).sample
- `grad.*` = d/d(input) of `sum(out * grad_output)`; `param_grad.<name>` = same w.r.t. that parameter (model in
  eval mode; there is no dropout/BN so train/eval are identical)
- {inter_text}

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same tensors from diffusers run in float64 (`model.double()`, inputs cast to
float64; diffusers still computes the sinusoidal timestep embedding in float32 and casts it), stored as F64,
for {len(f64_names)} of them (all but most `inter.*` intermediates).

## float32 vs float64 (observed)

{compare.table(entries, show)}

Full table for every tensor: `f32_vs_f64.json`. Re-running float32 twice in the same process: max abs diff
{max((f32[n] - rerun[n]).abs().max().item() for n in f32):.3g}.

Effect of the float32 sinusoid (float32 run vs a float64 run where the sinusoidal embedding is also computed in
float64):

{compare.table(exact)}

## Recommended tolerances (C++ float32 vs these float32 goldens)

{tol.markdown()}

A correct float32 port differs from the goldens by roughly the float32 rounding noise of both, i.e. up to ~2x
the f32-vs-f64 numbers above; the last column is the measured float32-vs-float64 difference over the
tolerance (the generator refuses a tolerance whose column exceeds {compare.MARGIN}).
- float64 C++ run vs `outputs_f64.safetensors`: `|a-b| <= 1e-9 * (1+|b|)`, only if the C++ code also computes
  the sinusoidal embedding in float32 like diffusers (or takes `inter.time_proj` from the file); otherwise the
  sinusoid table above bounds the difference.
- On CUDA: disable TF32 (cuBLAS and cuDNN) or loosen to ~1e-2 relative.
"""
    ctx.write_readme(case, body)
    what = (f"UNet2DConditionModel, {'SDXL structure (text_time add-embedding, linear proj, transformer_layers [1,2,2])' if sdxl else 'SD1.5 block structure, widths (32,32,64,64)'}: "
            f"forward, input grads, {len(spec['grads'])} param grads, intermediates; B={b}, {h}x{w}")
    ctx.note(case, what, tol)
