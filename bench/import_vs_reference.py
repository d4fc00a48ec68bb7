#!/usr/bin/env python3
"""A whole `prefdiff data import` against the same work done with diffusers + transformers, side by side.

Both sides start from the same files and do the same work: load the model folder's VAE, text encoder and
tokenizer; decode every image (Pillow / prefdiff's decoders), preprocess it as the official Diffusion-DPO
script (resize the short side, centre crop, [-1, 1]), encode it to the VAE posterior mean x scaling_factor;
tokenize and encode every distinct caption (last hidden state); store latents and embeddings as float16
(prefdiff: HDF5 shards; the reference: numpy arrays in memory, which flatters it). Same CPU threads, float32,
no grad. The input is the repository's four real ImageReward images copied under --groups x 4 names, one
ranking group of 4 (6 strict pairs) per caption. Rounds alternate the side that goes first; the table prints
medians and the ratio of times prefdiff / reference (<= 1: prefdiff is not slower) and pairs/s.

  python bench/import_vs_reference.py --prefdiff <build>/bin/prefdiff --model <build>/golden/main/pipeline_sd15_tiny
      [--groups 8] [--threads 2] [--rounds 3]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUBLIC = os.path.join(ROOT, "tests", "fixtures", "public", "imagereward_images")


def make_inputs(folder, groups):
    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    records = []
    for g in range(groups):
        names = []
        for k in range(1, 5):
            name = f"g{g}_{k}.webp"
            shutil.copyfile(os.path.join(PUBLIC, f"{k}.webp"), os.path.join(images, name))
            names.append(name)
        records.append({"id": f"g{g}", "prompt": f"a painting of an ocean with clouds and birds, variation {g}",
                        "generations": names, "ranking": [1, 2, 3, 4]})
    path = os.path.join(folder, "rankings.json")
    with open(path, "w") as f:
        json.dump(records, f)
    return path, images, records


def run_prefdiff(args, rankings, images, out_dir, threads):
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run([args.prefdiff, "data", "import", "imagereward", rankings, "-o", os.path.join(out_dir, "bench.h5"),
                    "--images-root", images, "--model", args.model, "--device", "cpu", "--threads", str(threads),
                    "--no-progress"], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_reference(args, records, images):
    import numpy as np
    import torch
    from diffusers import AutoencoderKL
    from PIL import Image
    from torchvision import transforms
    from transformers import CLIPTextModel, CLIPTokenizer

    start = time.perf_counter()
    vae = AutoencoderKL.from_pretrained(os.path.join(args.model, "vae")).eval()
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    text = CLIPTextModel.from_pretrained(os.path.join(args.model, "text_encoder")).eval()
    side = int(vae.config.sample_size)
    pre = transforms.Compose([transforms.Resize(side, interpolation=transforms.InterpolationMode.BILINEAR),
                              transforms.CenterCrop(side), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    latents, embeds = [], []
    with torch.no_grad():
        for r in records:  # one ranking group (4 images, 6 pairs) per batch, as the importer's group cache does
            x = torch.stack([pre(Image.open(os.path.join(images, n)).convert("RGB")) for n in r["generations"]])
            latents.append((vae.encode(x).latent_dist.mean * vae.config.scaling_factor).half().numpy())
            ids = tokenizer([r["prompt"], ""], padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids
            embeds.append(text(ids).last_hidden_state.half().numpy())
    np.concatenate(latents), np.concatenate(embeds)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefdiff", required=True)
    ap.add_argument("--model", required=True, help="a diffusers pipeline folder (vae/, text_encoder/, tokenizer/)")
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="prefdiff_import_bench_") as tmp:
        rankings, images, records = make_inputs(tmp, args.groups)
        pairs = 6 * len(records)
        ours, theirs = [], []
        for r in range(args.rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for side in order:
                if side == 0:
                    ours.append(run_prefdiff(args, rankings, images, os.path.join(tmp, "out"), args.threads))
                else:
                    theirs.append(run_reference(args, records, images))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"whole import, {len(records) * 4} images, {pairs} pairs, {len(records)} captions, {args.threads} threads, "
              f"{args.rounds} rounds, model {os.path.basename(os.path.normpath(args.model))}")
        print(f"  prefdiff data import        {a:8.3f} s   {pairs / a:8.1f} pairs/s   {len(records) * 4 / a:8.1f} images/s")
        print(f"  diffusers + transformers    {b:8.3f} s   {pairs / b:8.1f} pairs/s   {len(records) * 4 / b:8.1f} images/s")
        print(f"  ratio prefdiff / reference  {a / b:8.3f}")


if __name__ == "__main__":
    main()
