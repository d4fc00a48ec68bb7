#!/usr/bin/env python3
"""Converts the LAION aesthetic predictor head (improved-aesthetic-predictor's MLP, e.g.
sac+logos+ava1-l14-linearMSE.pth) to safetensors once, for prefdiff's clip::load_aesthetic_head.

  python tools/convert_aesthetic_head.py sac+logos+ava1-l14-linearMSE.pth aesthetic_head.safetensors

The .pth is a pickled state dict (torch.load with weights_only=True: no code from the file runs) with the keys
layers.{0,2,4,6,7}.{weight,bias}; a PyTorch Lightning checkpoint ({"state_dict": ...}) works too. Written as
float32, to <out>.tmp then renamed; an existing output is never replaced unless --force is given.
"""
import argparse
import hashlib
import os
import sys

import torch
from safetensors.torch import save_file

EXPECTED = [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pth", help="the released .pth state dict")
    ap.add_argument("out", help="the .safetensors file to write")
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    args = ap.parse_args()
    if os.path.exists(args.out) and not args.force:
        sys.exit(f"error: '{args.out}' exists; pass --force to replace it")
    sd = torch.load(args.pth, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    keys = sorted(sd.keys())
    if keys != sorted(EXPECTED):
        sys.exit(f"error: '{args.pth}' is not the aesthetic predictor MLP: expected keys {EXPECTED}, got {keys}")
    tensors = {k: sd[k].detach().to(torch.float32).contiguous() for k in EXPECTED}
    with open(args.pth, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata={"format": "pt", "source": os.path.basename(args.pth), "source_sha256": digest})
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: input size {tensors['layers.0.weight'].shape[1]}, source sha256 {digest}")


if __name__ == "__main__":
    main()
