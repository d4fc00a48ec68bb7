#!/usr/bin/env python3
"""Decode + training preprocessing of one image: prefdiff's media library vs Pillow, side by side.

The work per image: decode the encoded bytes (from memory) to RGB, resize the short side to the
resolution (bilinear, antialiased), centre-crop, scale to [-1, 1] float32 CHW. C++: media_tool bench
(media/image, one thread). Baselines in this process, one thread: Pillow + numpy (Image.open().convert,
Image.resize, crop, (x/255 - 0.5)/0.5) and the official torchvision pipeline on the PIL image. Rounds
alternate between the contenders; medians of per-image seconds; ratio = ours / baseline (< 1: faster).
Usage: bench/media_preprocess.sh BUILD_DIR [IMAGE_DIR]
"""
import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image


def pillow_numpy(data, res):
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    if w <= h:
        size = (res, int(res * h / w))
    else:
        size = (int(res * w / h), res)
    if size != im.size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    left, top = int(round((size[0] - res) / 2.0)), int(round((size[1] - res) / 2.0))
    im = im.crop((left, top, left + res, top + res))
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)
    return (x - np.float32(0.5)) / np.float32(0.5)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tool", required=True)
    p.add_argument("--images", required=True, help="folder with the ImageReward WebP files (1.webp)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--per-round", type=int, default=40)
    args = p.parse_args()
    import torch
    from torchvision import transforms

    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="prefdiff-bench-media-")
    src = Image.open(os.path.join(args.images, "1.webp")).convert("RGB")
    cases = []
    src.save(os.path.join(work, "512.jpg"), quality=90)
    cases.append(("512x512 JPEG q90 -> 512", os.path.join(work, "512.jpg"), 512))
    cases.append(("512x512 WebP (ImageReward) -> 512", os.path.join(args.images, "1.webp"), 512))
    src.resize((768, 768), Image.Resampling.BICUBIC).save(os.path.join(work, "768.jpg"), quality=90)
    cases.append(("768x768 JPEG q90 -> 512 (resize)", os.path.join(work, "768.jpg"), 512))
    src.resize((1024, 1024), Image.Resampling.BICUBIC).save(os.path.join(work, "1024.png"))
    cases.append(("1024x1024 PNG -> 512 (resize)", os.path.join(work, "1024.png"), 512))

    print(f"{'case':<36} {'ours ms':>8} {'Pillow+numpy ms':>16} {'ratio':>6} {'torchvision ms':>15} {'ratio':>6}")
    for name, path, res in cases:
        data = open(path, "rb").read()
        official = transforms.Compose([transforms.Resize(res, interpolation=transforms.InterpolationMode.BILINEAR),
                                       transforms.CenterCrop(res), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
        ours, pil, tv = [], [], []
        ref = pillow_numpy(data, res)
        for _ in range(args.rounds):
            out = subprocess.run([args.tool, "bench", path, str(res), str(args.per_round)], capture_output=True, text=True)
            ours += json.loads(out.stdout)["seconds"]
            for _ in range(args.per_round):
                t0 = time.perf_counter()
                x = pillow_numpy(data, res)
                pil.append(time.perf_counter() - t0)
            for _ in range(args.per_round):
                t0 = time.perf_counter()
                y = official(Image.open(io.BytesIO(data)).convert("RGB"))
                tv.append(time.perf_counter() - t0)
        assert np.abs(ref - y.numpy()).max() == 0
        mo, mp, mt = statistics.median(ours), statistics.median(pil), statistics.median(tv)
        print(f"{name:<36} {mo * 1e3:8.2f} {mp * 1e3:16.2f} {mo / mp:6.2f} {mt * 1e3:15.2f} {mo / mt:6.2f}")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
