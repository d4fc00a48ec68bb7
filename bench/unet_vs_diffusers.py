#!/usr/bin/env python3
"""prefdiff's UNet vs diffusers' UNet2DConditionModel on the CPU: same config, inputs shapes, threads, dtype
(float32). Forward (no grad, eval) and forward+backward (train, loss = mean(out^2)). Rounds alternate the two
implementations so load drift on a shared machine hits both; each round reports per-iteration times and the
tables print medians and the ratio prefdiff/diffusers (< 1 means prefdiff is faster).

  python bench/unet_vs_diffusers.py --tool <build>/bin/bench_unet_vs_diffusers [--threads 2] [--cases tiny,sd15]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from diffusers import UNet2DConditionModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tiny configs come from the generated golden set (docs/golden.md: cmake --build build --target golden).
GOLDEN = os.environ.get("PREFDIFF_GOLDEN_DIR") or os.path.join(ROOT, "build", "golden", "main")
CASES = {
    # name: (config file, batch, latent res, ctx len, warmup, reps per round, rounds)
    "tiny": (os.path.join(GOLDEN, "unet_sd15_tiny", "config.json"), 2, 16, 7, 3, 15, 5),
    "tiny_sdxl": (os.path.join(GOLDEN, "unet_sdxl_tiny", "config.json"), 2, 16, 7, 3, 15, 5),
    "sd15": (os.path.join(ROOT, "tests", "fixtures", "configs", "sd15_unet_config.json"), 1, 64, 77, 1, 2, 2),
}


def diffusers_times(config_path, mode, batch, res, ctx_len, warmup, reps):
    with open(config_path) as f:
        config = json.load(f)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config)
    x = torch.randn(batch, unet.config.in_channels, res, res)
    xdim = unet.config.cross_attention_dim
    xdim = xdim[-1] if isinstance(xdim, (list, tuple)) else xdim
    ctx = torch.randn(batch, ctx_len, xdim)
    t = torch.randint(0, 1000, (batch,))
    kw = {}
    if unet.config.addition_embed_type == "text_time":
        p = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kw["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, p), "time_ids": torch.full((batch, 6), res * 8.0)}
    train = mode == "fwdbwd"
    unet.train(train)
    unet.requires_grad_(train)
    times = []
    for i in range(warmup + reps):
        t0 = time.perf_counter()
        if train:
            unet(x, t, ctx, **kw).sample.square().mean().backward()
            unet.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                unet(x, t, ctx, **kw)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    del unet
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="bench_unet_vs_diffusers binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="tiny,tiny_sdxl,sd15")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    rows = []
    for name in args.cases.split(","):
        cfg, batch, res, ctx_len, warmup, reps, rounds = CASES[name]
        for mode in ("fwd", "fwdbwd"):
            ours, theirs = [], []
            for _ in range(rounds):
                out = subprocess.run([args.tool, cfg, mode, str(batch), str(res), str(ctx_len), str(args.threads),
                                      str(warmup), str(reps)], check=True, capture_output=True, text=True).stdout
                ours += json.loads(out.strip().splitlines()[-1])["times"]
                theirs += diffusers_times(cfg, mode, batch, res, ctx_len, warmup, reps)
            mo, mt = statistics.median(ours), statistics.median(theirs)
            rows.append((name, mode, batch, res, mo, mt, mo / mt))
            print(f"{name:10s} {mode:7s} B={batch} {res}x{res}: prefdiff {mo*1e3:9.2f} ms  diffusers {mt*1e3:9.2f} ms  "
                  f"ratio {mo/mt:.3f}  (n={len(ours)}/{len(theirs)})", flush=True)
    print(f"\ntorch {torch.__version__}, diffusers {__import__('diffusers').__version__}, float32, CPU, "
          f"{args.threads} threads")
    print("| case | pass | input | prefdiff (median) | diffusers (median) | prefdiff/diffusers |")
    print("|---|---|---|---|---|---|")
    for name, mode, batch, res, mo, mt, r in rows:
        print(f"| {name} | {'forward' if mode == 'fwd' else 'forward+backward'} | {batch}x4x{res}x{res} | "
              f"{mo*1e3:.1f} ms | {mt*1e3:.1f} ms | {r:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
