#!/usr/bin/env python3
"""Converts an OpenCLIP checkpoint (.pt/.bin state dict, e.g. HPSv2's HPS_v2_compressed.pt, an OpenCLIP
ViT-H-14) to the folder layout OpenCLIP uses on the Hugging Face hub, which prefdiff's
clip::load_openclip_model reads: open_clip_config.json + open_clip_model.safetensors.

  python tools/convert_openclip_checkpoint.py HPS_v2_compressed.pt --model ViT-H-14 --out models/hpsv2
  python tools/convert_openclip_checkpoint.py ckpt.pt --config my_model_config.json --out models/mine

--model takes the model config from the installed open_clip (open_clip.get_model_config); --config from a JSON
file (open_clip's model_configs/<name>.json or an open_clip_config.json). The state dict is read with
torch.load(weights_only=True) (no code from the file runs); {"state_dict": ...} wrappers and DDP's "module."
prefixes are removed. Tensor names are kept as OpenCLIP writes them: the key mapping happens on load. Files are
written to *.tmp and renamed; an existing output is never replaced unless --force is given.
"""
import argparse
import hashlib
import json
import os
import sys

import torch
from safetensors.torch import save_file


def load_state_dict(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        sys.exit(f"error: '{path}' does not hold a state dict of tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="open_clip model name, e.g. ViT-H-14")
    src.add_argument("--config", help="a model config JSON file")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--force", action="store_true", help="replace existing output files")
    args = ap.parse_args()

    if args.model:
        import open_clip
        cfg = open_clip.get_model_config(args.model)
        if cfg is None:
            sys.exit(f"error: open_clip has no model config '{args.model}'")
    else:
        with open(args.config) as f:
            cfg = json.load(f)
        cfg = cfg.get("model_cfg", cfg)
    os.makedirs(args.out, exist_ok=True)
    cfg_path = os.path.join(args.out, "open_clip_config.json")
    st_path = os.path.join(args.out, "open_clip_model.safetensors")
    for p in (cfg_path, st_path):
        if os.path.exists(p) and not args.force:
            sys.exit(f"error: '{p}' exists; pass --force to replace it")

    sd = load_state_dict(args.checkpoint)
    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    with open(args.checkpoint, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    save_file(tensors, st_path + ".tmp", metadata={"format": "pt", "source": os.path.basename(args.checkpoint),
                                                   "source_sha256": digest})
    with open(cfg_path + ".tmp", "w") as f:
        json.dump({"model_cfg": cfg}, f, indent=2)
    os.replace(st_path + ".tmp", st_path)
    os.replace(cfg_path + ".tmp", cfg_path)
    print(f"wrote {args.out}: {len(tensors)} tensors, source sha256 {digest}")


if __name__ == "__main__":
    main()
