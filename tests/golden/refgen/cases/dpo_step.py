"""dpo_step: one Diffusion-DPO training step as in SalesforceAIResearch/DiffusionDPO train.py (SD1.5 branch,
train_method 'dpo'), plus the alpha-DPO loss with the released batch-mean alpha, on unet_sd15_tiny."""
import copy
import hashlib

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from .. import compare, st_io
from ..models import perturb
from . import unet as unet_case
from .schedulers import SD

SEED = 1500
BETA = 5000.0
MU = 0.9999


def reference_params(name, p):
    return p.dim() == 1 or name in ("conv_in.weight", "conv_out.weight")


def step(policy, reference, x, dtype):
    policy = copy.deepcopy(policy).to(dtype)
    reference = copy.deepcopy(reference).to(dtype)
    ddpm = DDPMScheduler(**SD)
    f = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in x.items()}
    latents = torch.cat([f["latents_w"], f["latents_l"]])
    noise = f["noise"].repeat(2, 1, 1, 1)
    timesteps = f["timesteps"].repeat(2)
    ehs = f["encoder_hidden_states"].repeat(2, 1, 1)
    noisy = ddpm.add_noise(latents, noise, timesteps)
    b = f["latents_w"].shape[0]

    def forward():
        model_pred = policy(noisy, timesteps, ehs).sample
        model_losses = (model_pred - noise).pow(2).mean(dim=[1, 2, 3])
        mw, ml = model_losses.chunk(2)
        with torch.no_grad():
            ref_pred = reference(noisy, timesteps, ehs).sample
            ref_losses = (ref_pred - noise).pow(2).mean(dim=[1, 2, 3])
            rw, rl = ref_losses.chunk(2)
        h = -0.5 * BETA * ((mw - ml) - (rw - rl))
        return model_pred, ref_pred, mw, ml, rw, rl, h

    out = {}
    model_pred, ref_pred, mw, ml, rw, rl, h = forward()
    loss = -F.logsigmoid(h).mean()
    acc = (h > 0).sum().float() / b
    loss.backward()
    params = dict(policy.named_parameters())
    out.update({"noisy_latents": noisy, "model_pred": model_pred, "ref_pred": ref_pred, "model_mse_w": mw,
                "model_mse_l": ml, "ref_mse_w": rw, "ref_mse_l": rl, "model_diff": mw - ml, "ref_diff": rw - rl,
                "h": h, "implicit_acc": acc, "loss": loss})
    for n in unet_case.SD15_GRADS:
        out["param_grad." + n] = params[n].grad.detach().clone()
        params[n].grad = None
    for p in params.values():
        p.grad = None
    # alpha-DPO (same forward, fresh grads): scripts/main.py branch reweight_step < global_step (batch-mean alpha)
    *_, h = forward()
    p_ = torch.sigmoid(h)
    alpha = MU * torch.sigmoid(h).detach().mean()
    a_loss = ((1 / (alpha * (alpha - 1))) * (p_.pow(alpha) - (1 - alpha) - alpha * p_)).mean()
    a_loss.backward()
    out.update({"alpha_dpo.alpha": alpha, "alpha_dpo.p": p_, "alpha_dpo.loss": a_loss})
    for n in unet_case.SD15_GRADS:
        out["alpha_dpo.param_grad." + n] = params[n].grad.detach().clone()
    return {k: v.detach() for k, v in out.items()}


def generate(ctx):
    p = ctx.p
    d = ctx.dir("dpo_step")
    policy = unet_case.build("unet_sd15_tiny", ctx)
    reference = copy.deepcopy(policy)
    perturb(reference, ctx.seed(SEED + 4), scale=0.07, only=reference_params)
    pol_sd, ref_sd = policy.state_dict(), reference.state_dict()
    overlay = {k: v for k, v in ref_sd.items() if not torch.equal(v, pol_sd[k])}
    policy.save_config(d)
    st_io.write(d / "ref.safetensors", overlay, ctx.metadata(
        format="pt", model="dpo reference (policy further perturbed)", overlay="true",
        overlay_on="../unet_sd15_tiny/diffusion_pytorch_model.safetensors",
        note="contains only the tensors that differ from the policy; reference state dict = policy state dict "
             "updated with these", perturb_seed=ctx.seed(SEED + 4), perturb_rel="0.07"))

    b, (h, w) = p.batch, p.latent_hw
    g = torch.Generator().manual_seed(ctx.seed(SEED + 5))
    x = {"timesteps": torch.tensor(p.dpo_timesteps, dtype=torch.int64)}
    x["latents_w"] = torch.randn(b, 4, h, w, generator=g)
    x["latents_l"] = torch.randn(b, 4, h, w, generator=g)
    x["noise"] = torch.randn(b, 4, h, w, generator=g)
    x["encoder_hidden_states"] = torch.randn(b, p.seq_len, 32, generator=g)
    x["beta_dpo"] = torch.tensor(BETA, dtype=torch.float32)
    x["alpha_mu"] = torch.tensor(MU, dtype=torch.float32)
    weights = ctx.out / "unet_sd15_tiny" / "diffusion_pytorch_model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else "(not written: --only run)"
    st_io.write(d / "inputs.safetensors", x, ctx.metadata(
        input_seed=ctx.seed(SEED + 5), policy_weights="../unet_sd15_tiny/diffusion_pytorch_model.safetensors",
        policy_sha256=sha))

    f32 = step(policy, reference, x, torch.float32)
    rerun = step(policy, reference, x, torch.float32)
    f64 = step(policy, reference, x, torch.float64)
    min_h = f64["h"].abs().min().item()
    if min_h < 0.1:  # implicit accuracy must not hinge on float32 rounding of h
        raise RuntimeError(f"dpo_step: min |h| = {min_h:.3g} is too close to 0; pick other seeds for set {p.name}")
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries, "min_abs_h": min_h,
                                           "f32_rerun_max_abs": max((f32[n] - rerun[n]).abs().max().item() for n in f32)})
    tol = compare.Tolerances("dpo_step")
    tol.add("noisy_latents", compare.Elementwise(1e-6, 1e-6), [("noisy_latents", f32["noisy_latents"], f64["noisy_latents"])])
    tol.add("model_pred, ref_pred", compare.MaxNorm(1e-5), [(n, f32[n], f64[n]) for n in ("model_pred", "ref_pred")])
    tol.add("model/ref MSEs", compare.Elementwise(0, 1e-5),
            [(n, f32[n], f64[n]) for n in ("model_mse_w", "model_mse_l", "ref_mse_w", "ref_mse_l")])
    tol.add("h", compare.Elementwise(5e-3, 0), [("h", f32["h"], f64["h"])])
    tol.add("loss, alpha, alpha-DPO loss", compare.Elementwise(0, 1e-3),
            [(n, f32[n], f64[n]) for n in ("loss", "alpha_dpo.alpha", "alpha_dpo.loss")])
    tol.add("param grads (DPO and alpha-DPO)", compare.MaxNorm(2e-3),
            [(n, f32[n], f64[n]) for n in f32 if "param_grad." in n])
    tol.add("implicit_acc", compare.Elementwise(1e-6, 0), [("implicit_acc", f32["implicit_acc"], f64["implicit_acc"])])

    show = ["model_pred", "model_mse_w", "model_mse_l", "ref_mse_w", "ref_mse_l", "model_diff", "ref_diff", "h", "loss",
            "param_grad.conv_in.weight", "param_grad.conv_out.weight", "alpha_dpo.alpha", "alpha_dpo.loss",
            "alpha_dpo.param_grad.conv_in.weight", "alpha_dpo.param_grad.conv_out.weight"]
    body = f"""
One Diffusion-DPO training step exactly as in SalesforceAIResearch/DiffusionDPO `train.py` (SD1.5 branch,
`train_method == 'dpo'`), plus the alpha-DPO loss of yangli-lab/Diffusion_alpha-DPO_ICLR2026 `scripts/main.py`
(branch `reweight_step < global_step`: batch-mean alpha).

- policy = `../unet_sd15_tiny/` (config.json + diffusion_pytorch_model.safetensors of the SAME set; sha256 in
  inputs.safetensors metadata)
- reference = policy with these parameters further perturbed: every 1-D parameter (all biases and
  GroupNorm/LayerNorm affine params) plus `conv_in.weight` and `conv_out.weight` ({len(overlay)} tensors,
  {sum(v.numel() for v in overlay.values())} values): `p += randn * 0.07 * std(p)` (Generator seed {ctx.seed(SEED + 4)},
  named_parameters order, only selected params draw). **`ref.safetensors` is an overlay**: it holds only those
  tensors (F32); the reference state dict = policy state dict with these entries replaced (all other reference
  weights are bit-identical to the policy). `config.json` here = the same config as the policy.
- noise scheduler: `DDPMScheduler(**{SD})`

## Step

```python
latents   = cat([latents_w, latents_l])                  # [2B,4,H,W] winners first
noise     = noise.repeat(2,1,1,1)                         # shared noise  (train.py: noise.chunk(2)[0].repeat(2,1,1,1))
timesteps = timesteps.repeat(2)                           # shared t      (train.py: timesteps.chunk(2)[0].repeat(2))
ehs       = encoder_hidden_states.repeat(2,1,1)
noisy     = ddpm.add_noise(latents, noise, timesteps)     # saved: noisy_latents
model_pred = policy(noisy, timesteps, ehs).sample         # saved
model_losses = (model_pred - noise).pow(2).mean(dim=[1,2,3]); model_mse_w, model_mse_l = chunk(2)
with no_grad: ref_pred = ref(...).sample; ref_mse_w, ref_mse_l likewise
h = -0.5 * beta_dpo * ((model_mse_w - model_mse_l) - (ref_mse_w - ref_mse_l))   # beta_dpo = {BETA:g}
loss = -F.logsigmoid(h).mean();  implicit_acc = (h > 0).sum().float() / B
loss.backward()  -> param_grad.<name>

# alpha-DPO (same forward, fresh grads)
p = sigmoid(h); alpha = mu * sigmoid(h).detach().mean()   # mu = {MU}
loss = ((1/(alpha*(alpha-1))) * (p.pow(alpha) - (1-alpha) - alpha*p)).mean()
loss.backward()  -> alpha_dpo.param_grad.<name>
```

The losses are means over the B pairs: a port computing per-pair losses scales its gradient by 1/B and passes
B as the number of pairs (take B from the files: `latents_w.shape[0]`).
Latents are plain `randn` (no VAE, stand-ins for scaled VAE latents). Inputs drawn from Generator seed
{ctx.seed(SEED + 5)} in order latents_w, latents_l, noise, encoder_hidden_states; timesteps fixed =
{list(p.dpo_timesteps)}. B={b} pairs (UNet batch {2 * b}), H={h}, W={w}, sequence length {p.seq_len}. Grads: policy
parameters, model in eval mode (no dropout anyway); no grad clipping / optimizer step.

{st_io.tensor_list(d / 'inputs.safetensors')}

## Outputs (`outputs.safetensors`, float32)

{st_io.tensor_list(d / 'outputs.safetensors')}

Values: h = {[f'{v:.5g}' for v in f32['h'].tolist()]}, loss = {f32['loss'].item():.6g}, implicit_acc =
{f32['implicit_acc'].item():.6g}, alpha = {f32['alpha_dpo.alpha'].item():.6g}, alpha-DPO loss = {f32['alpha_dpo.loss'].item():.6g};
min |h| = {min_h:.3g} (so the implicit accuracy does not depend on float32 rounding).

`outputs_f64.safetensors`: same from a float64 run (policy, ref and inputs in float64), F64.

## float32 vs float64 (observed)

{compare.table(entries, show)}

Full table: `f32_vs_f64.json`.

## Recommended tolerances (C++ float32 vs these goldens)

h amplifies MSE differences by beta/2 = {BETA / 2:g}, so float32 noise in the per-image MSE (~1e-7 relative) shows up
in h at the ~1e-4..1e-3 level.

{tol.markdown()}

float64 port vs outputs_f64: `1e-7` relative on everything.
"""
    ctx.write_readme("dpo_step", body)
    ctx.note("dpo_step", f"Diffusion-DPO step (beta {BETA:g}) with unet_sd15_tiny as policy + perturbed reference: MSEs, h, "
             f"loss, acc, grads; alpha-DPO batch-mean loss + grads; B={b} pairs, {h}x{w}", tol)
