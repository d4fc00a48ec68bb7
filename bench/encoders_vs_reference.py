#!/usr/bin/env python3
"""prefdiff's encoders vs diffusers' AutoencoderKL and transformers' CLIPTextModel on the CPU: the same random
weights (written with save_pretrained and loaded by both), the same inputs, threads and dtype (float32, no
grad). VAE: encode to the posterior mean (images/s); text encoder: last_hidden_state of 77-token captions
(captions/s). Rounds alternate the two implementations (ABBA: the side that goes first alternates) so that
load drift hits both; the table prints medians of all passes and the ratio of times prefdiff/reference
(<= 1: prefdiff is not slower). Each side's outputs are checked against the other's (sum of |out|). Cases: vae_tiny / text_tiny (the golden tiny configs, written inline here), vae_sd15 / text_sd15
(tests/fixtures/configs/sd15_{vae,text_encoder}_config.json, 512x512 images).

  python bench/encoders_vs_reference.py --tool <build>/bin/encoders_vs_reference [--threads 2] [--cases ...]
      [--rounds N]   (overrides every case's number of rounds)
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
    "vae_sd15": ("vae", lambda: load_json("sd15_vae_config.json"), 1, 512, 1, 1, 4),
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
    ap.add_argument("--rounds", type=int, default=0, help="rounds per case (0: the case's default)")
    ap.add_argument("--size", type=int, default=0, help="VAE image size override (0: the case's own)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            kind, config, batch, size, warmup, reps, rounds = CASES[name]
            rounds = args.rounds or rounds
            if kind == "vae" and args.size:
                size = args.size
            folder, inputs = os.path.join(tmp, name), os.path.join(tmp, name + "_inputs.safetensors")
            model = build(kind, config(), folder)
            x = make_inputs(kind, batch, size, inputs)
            ours, theirs = [], []
            for r in range(rounds):
                def run_ours():
                    out = subprocess.run([args.tool, kind, folder, inputs, str(args.threads), str(warmup), str(reps)],
                                         check=True, capture_output=True, text=True).stdout
                    return json.loads(out.strip().splitlines()[-1])

                def run_theirs():
                    return reference_times(kind, model, x, warmup if r == 0 else 0, reps)  # stays warm

                # ABBA: the side that goes first alternates, so load drift within a round hits both alike.
                if r % 2 == 0:
                    res = run_ours()
                    t, ref_sum = run_theirs()
                else:
                    t, ref_sum = run_theirs()
                    res = run_ours()
                ours += res["times"]
                theirs += t
                rel = abs(res["checksum"] - ref_sum) / max(ref_sum, 1e-30)
                if rel > 1e-4:
                    raise SystemExit(f"{name}: outputs differ (sum |out| {res['checksum']} vs {ref_sum})")
            mo, mt = statistics.median(ours), statistics.median(theirs)
            rows.append((name, batch, size, mo, mt, mo / mt, len(ours), (min(ours), max(ours)), (min(theirs), max(theirs))))
            del model
    ref_name = {"vae": "diffusers", "text": "transformers"}
    print(f"\nthreads {args.threads}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    print("| case | batch | size | prefdiff median/pass (min-max) | reference median/pass (min-max) | items/s prefdiff "
          "| items/s reference | prefdiff/reference (time) | passes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, batch, size, mo, mt, ratio, n, ro, rt in rows:
        ref = ref_name[CASES[name][0]]
        print(f"| {name} | {batch} | {size} | {mo * 1e3:.1f} ms ({ro[0] * 1e3:.1f}-{ro[1] * 1e3:.1f}) | "
              f"{mt * 1e3:.1f} ms ({rt[0] * 1e3:.1f}-{rt[1] * 1e3:.1f}, {ref}) | {batch / mo:.2f} | {batch / mt:.2f} | "
              f"{ratio:.3f} | {n} each |")


if __name__ == "__main__":
    main()
