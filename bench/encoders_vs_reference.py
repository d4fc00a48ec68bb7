#!/usr/bin/env python3
"""prefdiff's encoders vs diffusers' AutoencoderKL and transformers' CLIPTextModel on the CPU: the same random
weights (written with save_pretrained and loaded by both), the same inputs, threads and dtype (float32, no
grad). VAE: encode to the posterior mean (images/s); text encoder: last_hidden_state of 77-token captions
(captions/s). Rounds alternate the two implementations so that load drift hits both; each round reports
per-pass times; the table prints medians and the ratio of times prefdiff/reference (<= 1: prefdiff is not
slower). Cases: vae_tiny / text_tiny (the golden tiny configs, written inline here), vae_sd15 / text_sd15
(tests/fixtures/configs/sd15_{vae,text_encoder}_config.json, 512x512 images).

  python bench/encoders_vs_reference.py --tool <build>/bin/encoders_vs_reference [--threads 2] [--cases ...]
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "configs")
TINY_VAE = {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "block_out_channels": [32, 64], "layers_per_block": 1,
            "latent_channels": 4, "norm_num_groups": 8, "sample_size": 32, "scaling_factor": 0.18215}
TINY_TEXT = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 3,
             "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
             "projection_dim": 32, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1}


def load_json(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


# name: (kind, config, batch, image size, warmup, reps per round, rounds)
CASES = {
    "vae_tiny": ("vae", lambda: TINY_VAE, 4, 32, 3, 10, 5),
    "text_tiny": ("text", lambda: TINY_TEXT, 8, 77, 3, 10, 5),
    "vae_sd15": ("vae", lambda: load_json("sd15_vae_config.json"), 2, 512, 1, 1, 3),
    "text_sd15": ("text", lambda: load_json("sd15_text_encoder_config.json"), 8, 77, 1, 2, 3),
}


def build(kind, config, folder):
    torch.manual_seed(0)
    if kind == "vae":
        from diffusers import AutoencoderKL
        model = AutoencoderKL.from_config(config)
    else:
        from transformers import CLIPTextConfig, CLIPTextModel
        cfg = {k: v for k, v in config.items() if not k.startswith("_") and k not in ("architectures", "model_type",
                                                                                       "torch_dtype", "transformers_version")}
        model = CLIPTextModel(CLIPTextConfig(**cfg))
    model.eval().requires_grad_(False)
    model.save_pretrained(folder)
    return model


def make_inputs(kind, batch, size, path):
    g = torch.Generator().manual_seed(1)
    if kind == "vae":
        x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
        save_file({"images": x}, path)
    else:
        # BOS, words, EOS, EOS padding: what the SD1.5 tokenizer produces.
        x = torch.full((batch, size), 49407, dtype=torch.long)
        for r in range(batch):
            n = 5 + 7 * r % 60
            x[r, 0] = 49406
            x[r, 1:1 + n] = torch.randint(256, 49000, (n,), generator=g)
        save_file({"input_ids": x}, path)
    return x


def reference_times(kind, model, x, warmup, reps):
    times, out = [], None
    with torch.no_grad():
        for i in range(warmup + reps):
            t0 = time.perf_counter()
            out = model.encode(x).latent_dist.mean if kind == "vae" else model(x).last_hidden_state
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return times, out.double().abs().sum().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True, help="the encoders_vs_reference binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="vae_tiny,text_tiny,vae_sd15,text_sd15")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            kind, config, batch, size, warmup, reps, rounds = CASES[name]
            folder, inputs = os.path.join(tmp, name), os.path.join(tmp, name + "_inputs.safetensors")
            model = build(kind, config(), folder)
            x = make_inputs(kind, batch, size, inputs)
            ours, theirs = [], []
            for r in range(rounds):
                out = subprocess.run([args.tool, kind, folder, inputs, str(args.threads), str(warmup), str(reps)],
                                     check=True, capture_output=True, text=True).stdout
                res = json.loads(out.strip().splitlines()[-1])
                ours += res["times"]
                t, ref_sum = reference_times(kind, model, x, warmup if r == 0 else 0, reps)  # stays warm
                theirs += t
                rel = abs(res["checksum"] - ref_sum) / max(ref_sum, 1e-30)
                if rel > 1e-4:
                    raise SystemExit(f"{name}: outputs differ (sum |out| {res['checksum']} vs {ref_sum})")
            mo, mt = statistics.median(ours), statistics.median(theirs)
            rows.append((name, batch, size, mo, mt, mo / mt, len(ours)))
            del model
    ref_name = {"vae": "diffusers", "text": "transformers"}
    print(f"\nthreads {args.threads}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    print("| case | batch | size | prefdiff (median/pass) | reference (median/pass) | items/s prefdiff | items/s reference "
          "| prefdiff/reference (time) | passes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, batch, size, mo, mt, ratio, n in rows:
        ref = ref_name[CASES[name][0]]
        print(f"| {name} | {batch} | {size} | {mo * 1e3:.1f} ms | {mt * 1e3:.1f} ms ({ref}) | {batch / mo:.2f} | "
              f"{batch / mt:.2f} | {ratio:.3f} | {n} each |")


if __name__ == "__main__":
    main()
