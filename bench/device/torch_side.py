#!/usr/bin/env python3
"""The PyTorch side of bench/device/run.sh: the matmul ceiling, the FLOP count of one DPO step, and the two
diffusers baselines. Each subcommand prints one JSON object as its last stdout line (and writes it to --out).

  torch_side.py matmul   --device cuda [--n 8192] [--dtype bfloat16]
      Measured ceiling: a big random bf16 matrix product, CUDA-event timed, median of --reps after warm-up.
  torch_side.py flops    --config UNET.json --latent 64 --ctx-len 77
      FLOPs of one UNet forward and forward+backward per image, counted by torch.utils.flop_counter on the
      meta device (no memory, no compute; same config, so the same network as prefdiff's).
  torch_side.py baseline --mode official|unet --config UNET.json --vae-config VAE.json --latent 64 --pairs 8
                         --optimizer adamw|adafactor [--checkpointing 0|1] [--device cuda] [--warmup 3] [--steps 10]
      (a) official: the Diffusion-DPO step as SalesforceAIResearch/DiffusionDPO train.py runs it: VAE (weight
          dtype bf16) encodes winner and loser images every step (latent_dist.sample() * scaling_factor), noise
          and t shared within a pair, policy UNet (fp32 weights, bf16 autocast as accelerate's mixed precision)
          with grad, reference UNet (bf16 weights) without, MSE as the script computes it (in the latents' dtype),
          -logsigmoid loss, backward, clip_grad_norm_ (AdamW only), optimizer step, loss.item() for logging.
          Text encoders are not run (random prompt embeddings, as prefdiff's precomputed ones) and nothing is
          offloaded to the CPU (the official SDXL run offloads VAE and reference: slower still).
      (b) unet: the same UNet work alone, from latents, as prefdiff does it (fp32 latents, fp32 MSE).
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch


def emit(obj, out):
    text = json.dumps(obj)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    print(text, flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- matmul
def cmd_matmul(a):
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    n = a.n
    g = torch.Generator(device=device).manual_seed(0)
    # Several operand sets, rotated, so that no run is served from cache; random data (zeros run faster).
    sets = [(torch.randn(n, n, device=device, dtype=dtype, generator=g),
             torch.randn(n, n, device=device, dtype=dtype, generator=g)) for _ in range(3)]
    out = torch.empty(n, n, device=device, dtype=dtype)
    for i in range(a.warmup):
        torch.matmul(*sets[i % 3], out=out)
    sync(device)
    times = []
    for i in range(a.reps):
        if device.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            torch.matmul(*sets[i % 3], out=out)
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1e3)
        else:
            t0 = time.perf_counter()
            torch.matmul(*sets[i % 3], out=out)
            times.append(time.perf_counter() - t0)
    assert torch.isfinite(out.float()).all(), "matmul produced non-finite values"
    med = statistics.median(times)
    flops = 2.0 * n ** 3
    res = {"what": "matmul", "device": str(device), "device_name": device_name(device), "dtype": a.dtype, "n": n,
           "median_s": med, "tflops": flops / med / 1e12, "times_s": times}
    emit(res, a.out)


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu (%d threads)" % torch.get_num_threads()


# ----------------------------------------------------------------------------------------------- flops
def unet_inputs(unet, batch, latent, ctx_len, device, dtype=torch.float32):
    cfg = unet.config
    xdim = cfg.cross_attention_dim
    xdim = xdim[-1] if isinstance(xdim, (list, tuple)) else xdim
    x = torch.randn(batch, cfg.in_channels, latent, latent, device=device, dtype=dtype)
    t = torch.randint(0, 1000, (batch,), device=device)
    ctx = torch.randn(batch, ctx_len, xdim, device=device, dtype=dtype)
    added = None
    if cfg.addition_embed_type == "text_time":
        p = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        px = 8.0 * latent
        added = {"text_embeds": torch.randn(batch, p, device=device, dtype=dtype),
                 "time_ids": torch.tensor([px, px, 0.0, 0.0, px, px], device=device, dtype=dtype).repeat(batch, 1)}
    return x, t, ctx, added


def cmd_flops(a):
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    with open(a.config) as f:
        cfg = json.load(f)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    x, t, ctx, added = unet_inputs(unet, 1, a.latent, a.ctx_len, torch.device("meta"))
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            unet(x, t, ctx, added_cond_kwargs=added)
    fwd = fc.get_total_flops()
    by_op = {str(k): v for k, v in fc.get_flop_counts().get("Global", {}).items()}
    x.requires_grad_(False)
    with FlopCounterMode(display=False) as fc:
        unet(x, t, ctx, added_cond_kwargs=added).sample.float().square().mean().backward()
    fwdbwd = fc.get_total_flops()
    res = {"what": "flops", "config": a.config, "config_json": cfg, "latent": a.latent, "ctx_len": a.ctx_len,
           "parameters": sum(p.numel() for p in unet.parameters()),
           "fwd_flops_per_image": fwd, "fwdbwd_flops_per_image": fwdbwd, "fwd_by_op": by_op,
           "method": "torch.utils.flop_counter.FlopCounterMode on the meta device, batch 1, diffusers "
                     "UNet2DConditionModel of the same config (2 FLOPs per multiply-add; matmul, conv, SDPA)"}
    emit(res, a.out)


# -------------------------------------------------------------------------------------------- baseline
def make_adafactor(params, lr):
    """transformers' Adafactor(lr, scale_parameter=False, relative_step=False, warmup_init=False), as the
    official SDXL run uses it; if transformers is missing (development machine), an equivalent in torch."""
    try:
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=1e-2), "transformers.Adafactor"
    except Exception:  # noqa: BLE001
        return MiniAdafactor(params, lr=lr, weight_decay=1e-2), "torch re-implementation (transformers missing)"


class MiniAdafactor(torch.optim.Optimizer):
    def __init__(self, params, lr, eps1=1e-30, clip=1.0, decay=-0.8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, eps1=eps1, clip=clip, decay=decay, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                st = self.state[p]
                st["step"] = st.get("step", 0) + 1
                b2 = 1.0 - st["step"] ** g["decay"]
                sq = grad * grad + g["eps1"]
                if grad.dim() >= 2:
                    if "r" not in st:
                        st["r"] = torch.zeros(grad.shape[:-1], device=grad.device)
                        st["c"] = torch.zeros(grad.shape[:-2] + grad.shape[-1:], device=grad.device)
                    st["r"].mul_(b2).add_(sq.mean(-1), alpha=1 - b2)
                    st["c"].mul_(b2).add_(sq.mean(-2), alpha=1 - b2)
                    rf = (st["r"] / st["r"].mean(-1, keepdim=True)).rsqrt_().unsqueeze(-1)
                    cf = st["c"].unsqueeze(-2).rsqrt()
                    upd = grad * rf * cf
                else:
                    if "v" not in st:
                        st["v"] = torch.zeros_like(grad)
                    st["v"].mul_(b2).add_(sq, alpha=1 - b2)
                    upd = grad * st["v"].rsqrt()
                upd.div_((upd.norm() / math.sqrt(upd.numel()) / g["clip"]).clamp_(min=1.0))
                if g["weight_decay"]:
                    p.add_(p, alpha=-g["weight_decay"] * g["lr"])
                p.add_(upd.to(p.dtype), alpha=-g["lr"])


def run_baseline(a, pairs):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    import torch.nn.functional as F

    device = torch.device(a.device)
    cuda = device.type == "cuda"
    weight_dtype = getattr(torch, a.weight_dtype)  # the script's weight_dtype (bf16 mixed precision)
    with open(a.config) as f:
        cfg = json.load(f)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):  # random init on the device: seconds instead of minutes for SDXL
        policy = UNet2DConditionModel.from_config(cfg)
        ref = UNet2DConditionModel.from_config(cfg)
    ref.load_state_dict(policy.state_dict())
    ref.to(dtype=weight_dtype).requires_grad_(False).eval()
    policy.train()
    if a.checkpointing:
        policy.enable_gradient_checkpointing()
    vae = None
    if a.mode == "official":
        with open(a.vae_config) as f:
            vcfg = json.load(f)
        with torch.device(device):
            vae = AutoencoderKL.from_config(vcfg)
        vae.to(dtype=weight_dtype).requires_grad_(False).eval()
        down = 2 ** (len(vcfg["block_out_channels"]) - 1)
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear")
    sync(device)
    build_s = time.perf_counter() - t0

    params = [p for p in policy.parameters()]
    if a.optimizer == "adamw":
        opt, opt_name = torch.optim.AdamW(params, lr=1e-8, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8), \
            "torch.optim.AdamW"
    else:
        opt, opt_name = make_adafactor(params, 1e-8)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda)
    beta = 5000.0
    C = cfg.get("in_channels", 4)

    def batch():
        b = {}
        _, _, ctx, added = unet_inputs(policy, pairs, a.latent, a.ctx_len, device)
        b["ctx"], b["added"] = ctx, added
        if a.mode == "official":
            px = a.latent * down
            b["pixels"] = torch.rand(2 * pairs, 3, px, px, device=device) * 2 - 1
        else:
            b["latents"] = torch.randn(2 * pairs, C, a.latent, a.latent, device=device)
        return b

    def mark(phases, name, reset=True):
        """Memory at a phase boundary of a profile step (CUDA only): allocated now and the peak since the last mark."""
        if phases is None or not cuda:
            return
        sync(device)
        phases.setdefault("allocated_" + name, 0)
        phases.setdefault("peak_" + name, 0)
        phases["allocated_" + name] = max(phases["allocated_" + name], torch.cuda.memory_allocated(device))
        phases["peak_" + name] = max(phases["peak_" + name], torch.cuda.max_memory_allocated(device))
        if reset:
            torch.cuda.reset_peak_memory_stats(device)

    def step(b, phases=None):
        opt.zero_grad(set_to_none=True)
        mark(phases, "before_step")
        if a.mode == "official":
            with torch.no_grad():
                latents = vae.encode(b["pixels"].to(weight_dtype)).latent_dist.sample()
                latents = latents * vae.config.scaling_factor
        else:
            latents = b["latents"]
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, 1000, (bsz,), device=device).long()
        timesteps = timesteps.chunk(2)[0].repeat(2)
        noise = noise.chunk(2)[0].repeat(2, 1, 1, 1)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        ctx = b["ctx"].repeat(2, 1, 1)
        added = None
        if b["added"] is not None:
            added = {"text_embeds": b["added"]["text_embeds"].repeat(2, 1), "time_ids": b["added"]["time_ids"].repeat(2, 1)}
        if a.mode == "official":
            ctx = ctx.to(weight_dtype)  # the script's text encoder runs in weight_dtype
            if added is not None:
                added = {k: v.to(weight_dtype) for k, v in added.items()}
        target = noise
        with autocast:
            model_pred = policy(noisy, timesteps, ctx, added_cond_kwargs=added).sample
        if a.mode == "official":
            model_losses = (model_pred - target).pow(2).mean(dim=[1, 2, 3])
        else:
            model_losses = (model_pred.float() - target.float()).pow(2).mean(dim=[1, 2, 3])
        mw, ml = model_losses.chunk(2)
        with torch.no_grad():
            r_added = None if added is None else {k: v.to(weight_dtype) for k, v in added.items()}
            ref_pred = ref(noisy.to(weight_dtype), timesteps, ctx.to(weight_dtype), added_cond_kwargs=r_added).sample
            if a.mode == "official":
                ref_losses = (ref_pred - target).pow(2).mean(dim=[1, 2, 3])
            else:
                ref_losses = (ref_pred.float() - target.float()).pow(2).mean(dim=[1, 2, 3])
            rw, rl = ref_losses.chunk(2)
        inside = -0.5 * beta * ((mw - ml) - (rw - rl))
        loss = -F.logsigmoid(inside).mean()
        mark(phases, "forward", reset=False)
        loss.backward()
        loss_value = loss.item()  # the script logs it every step (one host sync, as prefdiff's)
        mark(phases, "forward_backward")
        if a.optimizer == "adamw":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        mark(phases, "optimizer")
        return loss_value

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(a.warmup + a.steps):
        b = batch()
        sync(device)
        s = time.perf_counter()
        loss = step(b)
        sync(device)
        dt = time.perf_counter() - s
        if i >= a.warmup:
            times.append(dt)
        log("  [%s] step %d/%d %.1f ms loss %.4f%s" % (a.mode, i + 1, a.warmup + a.steps, dt * 1e3, loss,
                                                       " (warm-up)" if i < a.warmup else ""))
    med = statistics.median(times)
    # One more step, not timed, with the memory at each phase boundary (and, if asked, the allocator's history).
    phases, at_peak = {}, None
    if cuda:
        b = batch()
        if a.memory_history:
            at_peak = record_memory_history(lambda: step(b, phases), device)
        else:
            step(b, phases)
    res = {"impl": "diffusers-" + a.mode, "device": str(device), "device_name": device_name(device), "pairs": pairs,
           "images_per_step": 2 * pairs, "latent": a.latent, "ctx_len": a.ctx_len, "optimizer": opt_name,
           "checkpointing": bool(a.checkpointing), "build_s": build_s, "step_times_s": times, "median_step_s": med,
           "pairs_per_s": pairs / med, "last_loss": loss, "torch": torch.__version__}
    import diffusers
    res["diffusers"] = diffusers.__version__
    if cuda:
        res["peak_allocated_bytes"] = max(torch.cuda.max_memory_allocated(device), phases.get("peak_forward_backward", 0),
                                          phases.get("peak_optimizer", 0))
        res["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        res["memory_phases_bytes"] = phases
        if at_peak is not None:
            res["memory_at_peak"] = at_peak
    return res


def record_memory_history(run, device, top=15):
    """Runs `run` under torch.cuda.memory._record_memory_history and returns where the memory live at the step's
    peak was allocated: the bytes allocated before recording began (weights, optimizer state, ...), and the live
    blocks at the peak grouped by the innermost diffusers / torch.optim / transformers frame of their stack."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.memory._record_memory_history(max_entries=2_000_000, stacks="python")
    try:
        run()
        torch.cuda.synchronize(device)
        snap = torch.cuda.memory._snapshot()
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)
    trace = snap["device_traces"][device.index or 0]

    def replay(stop=None):
        live, total, peak, peak_at = {}, 0, 0, -1
        for i, ev in enumerate(trace):
            if stop is not None and i > stop:
                break
            act = ev["action"]
            if act == "alloc":
                live[ev["addr"]] = ev
                total += ev["size"]
            elif act in ("free_completed",) and ev["addr"] in live:
                total -= live.pop(ev["addr"])["size"]
            if total > peak:
                peak, peak_at = total, i
        return live, peak, peak_at

    _, peak, peak_at = replay()
    live, _, _ = replay(peak_at)

    def where(ev):
        for fr in ev.get("frames", []):
            f = fr.get("filename", "")
            for key in ("diffusers/", "torch/optim", "transformers/", "torch_side.py"):
                if key in f:
                    return "%s:%s (%s)" % (f[f.rfind(key):], fr.get("line", "?"), fr.get("name", "?"))
        return "other"

    groups = {}
    for ev in live.values():
        k = where(ev)
        groups[k] = groups.get(k, 0) + ev["size"]
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    return {"allocated_before_recording": before, "recorded_peak_above_that": peak, "events": len(trace),
            "top": [{"where": k, "bytes": v} for k, v in ranked[:top]],
            "rest_bytes": sum(v for _, v in ranked[top:])}


def cmd_baseline(a):
    pairs, retries = a.pairs, 0
    while True:
        try:
            res = run_baseline(a, pairs)
            break
        except torch.cuda.OutOfMemoryError:
            if pairs <= 1:
                raise
            log("  [%s] out of memory with %d pairs; retrying with %d" % (a.mode, pairs, pairs // 2))
            torch.cuda.empty_cache()
            pairs //= 2
            retries += 1
    res.update({"config": a.config, "requested_pairs": a.pairs, "oom_retries": retries})
    emit(res, a.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("matmul")
    m.add_argument("--device", default="cuda")
    m.add_argument("--dtype", default="bfloat16")
    m.add_argument("--n", type=int, default=8192)
    m.add_argument("--warmup", type=int, default=5)
    m.add_argument("--reps", type=int, default=30)
    m.add_argument("--out")
    f = sub.add_parser("flops")
    f.add_argument("--config", required=True)
    f.add_argument("--latent", type=int, required=True)
    f.add_argument("--ctx-len", type=int, default=77)
    f.add_argument("--out")
    b = sub.add_parser("baseline")
    b.add_argument("--mode", choices=["official", "unet"], required=True)
    b.add_argument("--config", required=True)
    b.add_argument("--vae-config")
    b.add_argument("--latent", type=int, required=True)
    b.add_argument("--pairs", type=int, default=8)
    b.add_argument("--ctx-len", type=int, default=77)
    b.add_argument("--optimizer", choices=["adamw", "adafactor"], default="adamw")
    b.add_argument("--checkpointing", type=int, default=0)
    b.add_argument("--device", default="cuda")
    b.add_argument("--weight-dtype", default="bfloat16", help="reference and VAE dtype (float32 for CPU runs)")
    b.add_argument("--warmup", type=int, default=3)
    b.add_argument("--steps", type=int, default=10)
    b.add_argument("--memory-history", action="store_true",
                   help="record the allocator's history during one extra step and report what is live at its peak")
    b.add_argument("--out")
    a = ap.parse_args()
    if getattr(a, "device", "cpu").startswith("cuda"):
        # Same precision rules as prefdiff's bf16 path: TF32 is irrelevant under bf16 autocast, but keep fp32
        # leftovers (optimizer, norms) in true fp32 on both sides.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
    if a.cmd == "baseline" and a.mode == "official" and not a.vae_config:
        ap.error("--mode official needs --vae-config")
    {"matmul": cmd_matmul, "flops": cmd_flops, "baseline": cmd_baseline}[a.cmd](a)


if __name__ == "__main__":
    main()
