"""schedulers: DDPM schedule / add_noise / velocity, and full DDIM, Euler and DPM-Solver++ 2M loops with a fixed
fake model, each measured against a float64 re-implementation of the same formulas written here."""
import json

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

from .. import compare, st_io

SD = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
      "prediction_type": "epsilon"}
DDIM_CFG = dict(SD, clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")
EULER_CFG = dict(SD, timestep_spacing="leading", steps_offset=1, interpolation_type="linear", use_karras_sigmas=False)
# The scheduler_config.json of runwayml/stable-diffusion-v1-5 (a PNDMScheduler config): the diffusers Diffusion-DPO
# example validates with DPMSolverMultistepScheduler.from_config(pipeline.scheduler.config), i.e. from this.
SD15_PNDM_CFG = {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
                 "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False,
                 "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None}
SEED = 1400


# ---- float64 re-implementations (independent of diffusers) -------------------------------------------------------

def schedule_f64():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return betas, torch.cumprod(1 - betas, 0)


def fake_model(x, fixed, t):
    return 0.1 * x + fixed * (float(t) / 1000)


def ddim_f64(ac, x, fixed, timesteps, steps):
    prev, pred = [], []
    for t in timesteps.tolist():
        eps = fake_model(x, fixed, t)
        x, x0 = ddim_step_f64(ac, eps, t, x, steps)
        prev.append(x)
        pred.append(x0)
    return torch.stack(prev), torch.stack(pred)


def ddim_step_f64(ac, eps, t, x, steps):
    a_t = ac[t]
    tp = t - 1000 // steps
    a_p = ac[tp] if tp >= 0 else ac[0]
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    return a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps, x0


def euler_sigmas_f64(ac, timesteps):
    s = ((1 - ac) / ac).sqrt()
    t = timesteps.double()
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=999)
    w = t - lo
    return torch.cat([s[lo] * (1 - w) + s[hi] * w, torch.zeros(1, dtype=torch.float64)])


def euler_step_f64(sigma, sigma_next, eps, x):
    x0 = x - sigma * eps
    return x + (x - x0) / sigma * (sigma_next - sigma), x0


def euler_f64(ac, x0_latent, fixed, timesteps):
    sig = euler_sigmas_f64(ac, timesteps)
    x = x0_latent * (sig.max() ** 2 + 1).sqrt()
    prev, pred = [], []
    for k, t in enumerate(timesteps.tolist()):
        eps = fake_model(x / (sig[k] ** 2 + 1).sqrt(), fixed, t)
        x, x0 = euler_step_f64(sig[k], sig[k + 1], eps, x)
        prev.append(x)
        pred.append(x0)
    return torch.stack(prev), torch.stack(pred)


def dpm_alpha_sigma_lambda(sigma):
    alpha = 1 / (sigma ** 2 + 1).sqrt()
    s = sigma * alpha
    return alpha, s, alpha.log() - s.log()


def dpm_step_f64(sigmas, k, x, x0, x0_prev, first_order):
    """DPM-Solver++ (data prediction), 2M midpoint; first order at the first and the last step."""
    a_t, s_t, l_t = dpm_alpha_sigma_lambda(sigmas[k + 1])
    _, s_s, l_s = dpm_alpha_sigma_lambda(sigmas[k])
    h = l_t - l_s
    if first_order:
        return (s_t / s_s) * x - a_t * (torch.exp(-h) - 1) * x0
    _, _, l_s1 = dpm_alpha_sigma_lambda(sigmas[k - 1])
    r0 = (l_s - l_s1) / h
    d1 = (x0 - x0_prev) / r0
    return (s_t / s_s) * x - a_t * (torch.exp(-h) - 1) * x0 - 0.5 * a_t * (torch.exp(-h) - 1) * d1


def dpm_sigmas_f64(ac, timesteps):
    s = ((1 - ac) / ac).sqrt()
    return torch.cat([s[timesteps], torch.zeros(1, dtype=torch.float64)])


def dpm_f64(ac, x, fixed, timesteps):
    sig = dpm_sigmas_f64(ac, timesteps)
    n = len(timesteps)
    prev, pred, x0_prev = [], [], None
    for k, t in enumerate(timesteps.tolist()):
        eps = fake_model(x, fixed, t)
        a_s, s_s, _ = dpm_alpha_sigma_lambda(sig[k])
        x0 = (x - s_s * eps) / a_s
        x = dpm_step_f64(sig, k, x, x0, x0_prev, first_order=(k == 0 or k == n - 1))
        x0_prev = x0
        prev.append(x)
        pred.append(x0)
    return torch.stack(prev), torch.stack(pred)


# ---- the diffusers float32 runs ---------------------------------------------------------------------------------

def run_ddim(steps, x, fixed):
    s = DDIMScheduler(**DDIM_CFG)
    s.set_timesteps(steps)
    prev, pred, scale = [], [], []
    for t in s.timesteps:
        scale.append(t / 1000)  # int64 0-d / int -> float32
        o = s.step(0.1 * x + fixed * (t / 1000), t, x, eta=0.0)
        x = o.prev_sample
        prev.append(x)
        pred.append(o.pred_original_sample)
    return s, torch.stack(prev), torch.stack(pred), torch.stack(scale).float()


def run_euler(steps, latent, fixed):
    s = EulerDiscreteScheduler(**EULER_CFG)
    s.set_timesteps(steps)
    x = latent * s.init_noise_sigma
    initial = x
    prev, pred, scale = [], [], []
    for t in s.timesteps:
        xin = s.scale_model_input(x, t)
        scale.append(t / 1000)
        o = s.step(0.1 * xin + fixed * (t / 1000), t, x)
        x = o.prev_sample
        prev.append(x)
        pred.append(o.pred_original_sample)
    return s, initial, torch.stack(prev), torch.stack(pred), torch.stack(scale).float()


def run_dpm(steps, x, fixed):
    s = DPMSolverMultistepScheduler.from_config(SD15_PNDM_CFG)
    s.set_timesteps(steps)
    converted = []
    convert = s.convert_model_output

    def recording(model_output, *args, **kwargs):
        out = convert(model_output, *args, **kwargs)
        converted.append(out.detach().clone())
        return out
    s.convert_model_output = recording
    prev, scale = [], []
    for t in s.timesteps:
        x = s.scale_model_input(x, t)
        scale.append(t / 1000)
        x = s.step(0.1 * x + fixed * (t / 1000), t, x).prev_sample
        prev.append(x)
    s.convert_model_output = convert
    return s, torch.stack(prev), torch.stack(converted), torch.stack(scale).float()


def per_step_errors(step_fn, given, prev, pred):
    """float64 formula applied to each saved float32 input vs the saved float32 output (what a test sees)."""
    outs, x0s = [], []
    for k in range(prev.shape[0]):
        x, x0 = step_fn(k, given[k].double())
        outs.append(x)
        x0s.append(x0)
    return torch.stack(outs), torch.stack(x0s)


def generate(ctx):
    p = ctx.p
    d = ctx.dir("schedulers")
    b, (h, w), n = p.batch, p.latent_hw, len(p.add_noise_timesteps)
    g = torch.Generator().manual_seed(ctx.seed(SEED))
    original = torch.randn(n, 4, h, w, generator=g)
    noise = torch.randn(n, 4, h, w, generator=g)
    initial = torch.randn(b, 4, h, w, generator=g)
    fixed = torch.randn(b, 4, h, w, generator=g)
    tol = compare.Tolerances("schedulers")
    stats = {}

    # DDPM
    ddpm = DDPMScheduler(**SD)
    ddpm.save_config(d)
    (d / "scheduler_config.json").rename(d / "ddpm_scheduler_config.json")
    t_noise = torch.tensor(p.add_noise_timesteps, dtype=torch.int64)
    noisy = ddpm.add_noise(original, noise, t_noise)
    velocity = ddpm.get_velocity(original, noise, t_noise)
    meta = ctx.metadata(seed=ctx.seed(SEED), config=json.dumps(SD))
    st_io.write(d / "ddpm.safetensors", {"add_noise.timesteps": t_noise, "betas": ddpm.betas,
                                         "alphas_cumprod": ddpm.alphas_cumprod, "add_noise.original_samples": original,
                                         "add_noise.noise": noise, "add_noise.noisy_samples": noisy,
                                         "get_velocity.velocity": velocity}, meta)
    betas64, ac64 = schedule_f64()
    act = ddpm.alphas_cumprod.double()  # diffusers' float32 table, then float64 arithmetic

    def add_noise_f64(ac):
        sa, s1 = ac[t_noise].sqrt().view(-1, 1, 1, 1), (1 - ac[t_noise]).sqrt().view(-1, 1, 1, 1)
        return sa * original.double() + s1 * noise.double(), sa * noise.double() - s1 * original.double()
    noisy64, velocity64 = add_noise_f64(ac64)
    noisy_t, velocity_t = add_noise_f64(act)
    st_io.write(d / "ddpm_f64.safetensors", {"betas": betas64, "alphas_cumprod": ac64,
                                             "add_noise.noisy_samples": noisy64, "get_velocity.velocity": velocity64},
                ctx.metadata(note="pure float64 computation of the same formulas"))
    stats.update({"ddpm.betas": compare.stats(ddpm.betas, betas64),
                  "ddpm.alphas_cumprod": compare.stats(ddpm.alphas_cumprod, ac64),
                  "ddpm.add_noise": compare.stats(noisy, noisy64),
                  "ddpm.get_velocity": compare.stats(velocity, velocity64),
                  "ddpm.add_noise.f32_table": compare.stats(noisy, noisy_t),
                  "ddpm.get_velocity.f32_table": compare.stats(velocity, velocity_t)})
    tol.add("ddpm add_noise, get_velocity", compare.Elementwise(1e-6, 1e-6),
            [("add_noise.noisy_samples", noisy, noisy_t), ("get_velocity.velocity", velocity, velocity_t)])

    def sampler_stats(name, prev, pred, pure, table, step):
        stats.update({f"{name}.prev_samples": compare.stats(prev, pure[0]),
                      f"{name}.final_sample": compare.stats(prev[-1], pure[0][-1]),
                      f"{name}.pred_original_samples": compare.stats(pred, pure[1]),
                      f"{name}.prev_samples.f32_table": compare.stats(prev, table[0]),
                      f"{name}.pred_original_samples.f32_table": compare.stats(pred, table[1]),
                      f"{name}.prev_samples.per_step": compare.stats(prev, step[0]),
                      f"{name}.pred_original_samples.per_step": compare.stats(pred, step[1])})
        tol.add(f"{name} per step (from the saved inputs of the step): prev_samples, pred_original_samples",
                compare.Elementwise(1e-5, 1e-5), [(f"{name}.prev_samples", prev, step[0]),
                                                  (f"{name}.pred_original_samples", pred, step[1])])
        tol.add(f"{name} whole trajectory: prev_samples, pred_original_samples", compare.Elementwise(1e-5, 1e-5),
                [(f"{name}.prev_samples", prev, table[0]), (f"{name}.pred_original_samples", pred, table[1])])

    # DDIM
    ddim, prev, pred, scale = run_ddim(p.ddim_steps, initial, fixed)
    ddim.save_config(d)
    (d / "scheduler_config.json").rename(d / "ddim_scheduler_config.json")
    st_io.write(d / "ddim.safetensors", {
        "timesteps": ddim.timesteps, "num_inference_steps": torch.tensor(p.ddim_steps, dtype=torch.int64),
        "initial_latent": initial, "fixed_model_tensor": fixed, "model_output_scale": scale,
        "prev_samples": prev, "pred_original_samples": pred,
        "final_alpha_cumprod": ddim.final_alpha_cumprod.float()},
        ctx.metadata(seed=ctx.seed(SEED), eta="0.0", num_inference_steps=p.ddim_steps, config=json.dumps(DDIM_CFG)))
    ts = ddim.timesteps.tolist()
    given = torch.cat([initial[None], prev[:-1]])
    sampler_stats("ddim", prev, pred,
                  ddim_f64(ac64, initial.double(), fixed.double(), ddim.timesteps, p.ddim_steps),
                  ddim_f64(act, initial.double(), fixed.double(), ddim.timesteps, p.ddim_steps),
                  per_step_errors(lambda k, x: ddim_step_f64(act, fake_model(x, fixed.double(), ts[k]), ts[k], x,
                                                             p.ddim_steps), given, prev, pred))

    # Euler
    euler, init_sample, prev, pred, scale = run_euler(p.euler_steps, initial, fixed)
    euler.save_config(d)
    (d / "scheduler_config.json").rename(d / "euler_scheduler_config.json")
    st_io.write(d / "euler.safetensors", {
        "num_inference_steps": torch.tensor(p.euler_steps, dtype=torch.int64), "timesteps": euler.timesteps,
        "sigmas": euler.sigmas, "init_noise_sigma": torch.as_tensor(euler.init_noise_sigma, dtype=torch.float32),
        "initial_latent": initial, "initial_sample": init_sample, "fixed_model_tensor": fixed,
        "model_output_scale": scale, "prev_samples": prev, "pred_original_samples": pred},
        ctx.metadata(seed=ctx.seed(SEED), num_inference_steps=p.euler_steps,
                     init_noise_sigma_python_float=float(euler.init_noise_sigma), config=json.dumps(EULER_CFG)))
    sig_t = euler_sigmas_f64(act, euler.timesteps)
    tl = euler.timesteps.tolist()
    given = torch.cat([init_sample[None], prev[:-1]])
    stats["euler.sigmas"] = compare.stats(euler.sigmas, euler_sigmas_f64(ac64, euler.timesteps))
    stats["euler.sigmas.f32_table"] = compare.stats(euler.sigmas, sig_t)
    tol.add("euler sigmas", compare.Elementwise(0, 1e-6), [("euler.sigmas", euler.sigmas, sig_t)])
    sampler_stats("euler", prev, pred,
                  euler_f64(ac64, initial.double(), fixed.double(), euler.timesteps),
                  euler_f64(act, initial.double(), fixed.double(), euler.timesteps),
                  per_step_errors(lambda k, x: euler_step_f64(
                      sig_t[k], sig_t[k + 1], fake_model(x / (sig_t[k] ** 2 + 1).sqrt(), fixed.double(), tl[k]), x),
                      given, prev, pred))

    # DPM-Solver++ 2M
    dpm, prev, pred, scale = run_dpm(p.dpm_steps, initial, fixed)
    dpm.save_config(d)
    (d / "scheduler_config.json").rename(d / "dpmpp_2m_scheduler_config.json")
    st_io.write(d / "dpmpp_2m.safetensors", {
        "timesteps": dpm.timesteps, "num_inference_steps": torch.tensor(p.dpm_steps, dtype=torch.int64),
        "sigmas": dpm.sigmas, "initial_latent": initial, "fixed_model_tensor": fixed, "model_output_scale": scale,
        "prev_samples": prev, "pred_original_samples": pred},
        ctx.metadata(seed=ctx.seed(SEED), num_inference_steps=p.dpm_steps, from_config=json.dumps(SD15_PNDM_CFG)))
    dsig_t = dpm_sigmas_f64(act, dpm.timesteps)
    dl, n_dpm = dpm.timesteps.tolist(), len(dpm.timesteps)
    given = torch.cat([initial[None], prev[:-1]])

    def dpm_one(k, x):
        a_s, s_s, _ = dpm_alpha_sigma_lambda(dsig_t[k])
        x0 = (x - s_s * fake_model(x, fixed.double(), dl[k])) / a_s
        x0_prev = pred[k - 1].double() if k > 0 else None
        return dpm_step_f64(dsig_t, k, x, x0, x0_prev, first_order=(k == 0 or k == n_dpm - 1)), x0
    stats["dpmpp_2m.sigmas"] = compare.stats(dpm.sigmas, dpm_sigmas_f64(ac64, dpm.timesteps))
    stats["dpmpp_2m.sigmas.f32_table"] = compare.stats(dpm.sigmas, dsig_t)
    tol.add("dpmpp_2m sigmas", compare.Elementwise(0, 1e-6), [("dpmpp_2m.sigmas", dpm.sigmas, dsig_t)])
    sampler_stats("dpmpp_2m", prev, pred,
                  dpm_f64(ac64, initial.double(), fixed.double(), dpm.timesteps),
                  dpm_f64(act, initial.double(), fixed.double(), dpm.timesteps),
                  per_step_errors(dpm_one, given, prev, pred))
    ctx.write_json(d / "f32_vs_f64.json", stats)
    write_readme(ctx, d, tol, stats, ddim, euler, dpm)
    ctx.note("schedulers", f"DDPM schedule/add_noise/velocity; DDIM ({p.ddim_steps} steps, SD config, eta 0), Euler "
             f"({p.euler_steps} steps, SDXL config) and DPM-Solver++ 2M ({p.dpm_steps} steps, SD1.5 config) loops with a "
             f"fixed fake model; B={b}, {h}x{w}", tol)


def write_readme(ctx, d, tol, stats, ddim, euler, dpm):
    p = ctx.p
    b, (h, w), n = p.batch, p.latent_hw, len(p.add_noise_timesteps)
    dpm_cfg = {k: v for k, v in dict(dpm.config).items() if not k.startswith("_")}
    body = f"""
All random tensors from `torch.Generator().manual_seed({ctx.seed(SEED)})` in this order: `add_noise.original_samples`
[N,4,H,W], `add_noise.noise` [N,4,H,W], `initial_latent` [B,4,H,W], `fixed_model_tensor` [B,4,H,W] (N={n}, B={b}, H={h}, W={w}).
The same `initial_latent` and `fixed_model_tensor` drive all three loops (each file holds its own copy).

## DDPM (`ddpm.safetensors`, `ddpm_scheduler_config.json`)

`DDPMScheduler(**{json.dumps(SD)})`

- `betas`, `alphas_cumprod` [1000] F32 exactly as diffusers holds them (computed in float32:
  `linspace(sqrt(b0), sqrt(b1), 1000, float32)**2`, `cumprod(1-betas)` in float32).
- `add_noise.*`: `add_noise(original_samples, noise, timesteps)` with timesteps {list(p.add_noise_timesteps)};
  `get_velocity.velocity` = `get_velocity(original_samples, noise, timesteps)` (same inputs).
- `ddpm_f64.safetensors` (F64!): the same schedule/add_noise/velocity computed entirely in float64.

{st_io.tensor_list(d / 'ddpm.safetensors')}

## DDIM (`ddim.safetensors`, `ddim_scheduler_config.json`)

`DDIMScheduler(**{json.dumps(DDIM_CFG)})`, `set_timesteps({p.ddim_steps})` -> timesteps (I64) =
{ddim.timesteps.tolist()}; final_alpha_cumprod = alphas_cumprod[0] = {ddim.final_alpha_cumprod.item()!r}.

Loop (eta = 0, no guidance):
```python
x = initial_latent
for t in timesteps:                      # t: int64 0-d tensor
    model_output = 0.1 * x + fixed_model_tensor * (t / 1000)   # t/1000 -> float32 (saved in model_output_scale)
    o = ddim.step(model_output, t, x, eta=0.0)
    x = o.prev_sample                # saved: prev_samples[k], pred_original_samples[k]
```

{st_io.tensor_list(d / 'ddim.safetensors')}

## Euler (`euler.safetensors`, `euler_scheduler_config.json`)

`EulerDiscreteScheduler(**{json.dumps(EULER_CFG)})` (= SDXL's scheduler config), `set_timesteps({p.euler_steps})` ->
timesteps (F32) = {euler.timesteps.tolist()}; sigmas (F32, {len(euler.sigmas)} incl. final 0) =
{[f'{v:.6g}' for v in euler.sigmas.tolist()]}; init_noise_sigma = sqrt(max_sigma^2+1) = {float(euler.init_noise_sigma)!r}
(leading spacing).

```python
x = initial_latent * init_noise_sigma             # saved as initial_sample
for t in timesteps:                               # t: float32 0-d tensor
    xin = euler.scale_model_input(x, t)           # x / sqrt(sigma^2+1) (not saved)
    model_output = 0.1 * xin + fixed_model_tensor * (t / 1000)
    o = euler.step(model_output, t, x)            # s_churn=0 -> deterministic
    x = o.prev_sample                             # saved: prev_samples[k], pred_original_samples[k]
```

Model outputs are not stored: they are exactly `0.1*x + fixed_model_tensor*model_output_scale[k]` (elementwise
float32 ops, bit-reproducible).

{st_io.tensor_list(d / 'euler.safetensors')}

## DPM-Solver++ 2M (`dpmpp_2m.safetensors`, `dpmpp_2m_scheduler_config.json`)

What the diffusers Diffusion-DPO example samples its validation images with:
`DPMSolverMultistepScheduler.from_config(<SD1.5 scheduler_config.json>)`, the SD1.5 config being
`{json.dumps(SD15_PNDM_CFG)}`; resolved (`dpmpp_2m_scheduler_config.json`, diffusers' `save_config`):
`{json.dumps(dpm_cfg)}` — i.e. algorithm `dpmsolver++`, solver_order 2, solver_type `midpoint`, `linspace` timestep
spacing, `use_karras_sigmas` false, `final_sigmas_type` `zero`, `lower_order_final` true.
`set_timesteps({p.dpm_steps})` -> timesteps (I64) = {dpm.timesteps.tolist()}; sigmas (F32, incl. final 0) =
{[f'{v:.6g}' for v in dpm.sigmas.tolist()]}; init_noise_sigma 1, `scale_model_input` is the identity.

```python
x = initial_latent
for t in timesteps:
    model_output = 0.1 * x + fixed_model_tensor * (t / 1000)   # t/1000 -> float32 (model_output_scale)
    x = dpm.step(model_output, t, x).prev_sample               # saved: prev_samples[k]
# pred_original_samples[k] = dpm.convert_model_output(model_output, sample=x) at step k: the data prediction
# x0 = (x - sigma_t * eps) / alpha_t with alpha_t = 1/sqrt(sigma^2+1), sigma_t = sigma * alpha_t
```

Update (dpmsolver++ data prediction, lambda = log(alpha_t) - log(sigma_t), h = lambda_next - lambda_k):
first order at step 0 and at the last step (its sigma is 0, so the result is x0 itself):
`x' = (sigma_next/sigma_k) * x - alpha_next * (exp(-h) - 1) * x0_k`; otherwise second order (midpoint):
`r0 = (lambda_k - lambda_prev) / h`, `D1 = (x0_k - x0_prev) / r0`,
`x' = (sigma_next/sigma_k) * x - alpha_next*(exp(-h)-1) * x0_k - 0.5 * alpha_next*(exp(-h)-1) * D1`.
(alpha, sigma here are the `_sigma_to_alpha_sigma_t` values; diffusers computes them in float32.)

{st_io.tensor_list(d / 'dpmpp_2m.safetensors')}

## float32 (diffusers) vs a float64 re-implementation of the same formulas (observed)

Rows without suffix: the float64 loop from the same initial latent with the schedule itself computed in float64
(this includes the float32 drift of diffusers' `alphas_cumprod`, ~5e-7 relative, which a port that follows the
float32 recipe shares). `.f32_table`: float64 arithmetic on diffusers' float32 `alphas_cumprod` table (the float32
rounding of the computation alone: what the tolerances are measured against). `.per_step`: the float64 step
applied to each saved float32 input (the previous saved sample, and for DPM-Solver++ the previous saved data
prediction): what a per-step test compares.

{compare.table(stats)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}

- `alphas_cumprod` / `betas`: a port that follows diffusers' float32 recipe matches to <= 2 ulp: `1e-6` relative
  (float32-vs-float64 drift of the cumulative product: see the table; a float64 port rounded to float32 also
  stays within `1e-6` relative).
- Timesteps are integers (DDIM, DPM-Solver++: I64; Euler: F32 holding integers): compare exactly as integers.
- The last column is the measured float32-vs-float64 difference over the tolerance (the generator refuses a
  tolerance whose column exceeds {compare.MARGIN}).
"""
    ctx.write_readme("schedulers", body)
