#!/usr/bin/env python3
"""Writes the references the encoder tests compare with, using the venv's own packages (ctest runs this as a
fixture before test_openclip_aesthetic and test_vae_golden):

- openclip/<case>/: tiny OpenCLIP models (open_clip.model.CLIP, gelu, argmax pooling, an old-style attn_mask
  tensor in the checkpoint, saved as {"state_dict": ...}; and CustomTextCLIP, quick_gelu, "eos" pooling, saved
  with DDP "module." prefixes) converted by tools/convert_openclip_checkpoint.py, with OpenCLIP's
  encode_image/encode_text features, normalised embeddings, logit_scale.exp() and logits for fixed inputs,
  in float32 (reference.safetensors) and float64 (reference_f64.safetensors).
- openclip/vit_h_14/: OpenCLIP's ViT-H-14 config (HPSv2's architecture) and the name and shape of every tensor
  of that model (built on the meta device: no weights).
- aesthetic/: an improved-aesthetic-predictor MLP (input 768) with random weights saved as .pth, converted by
  tools/convert_aesthetic_head.py, and its scores on normalised embeddings (a zero row included).
- vae_f64/<set>/outputs.safetensors: diffusers' AutoencoderKL in float64 on golden/vae_tiny (when the golden set is
  there): the float64 port must equal diffusers itself to 1e-9.

  python make_encoder_references.py --out <build>/tests/encoders/reference --tools <repo>/tools --golden-root <build>/golden --sets main second
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


def perturb(model, seed):
    """Every parameter += N(0, (0.1 std)^2) (0.1 for constant tensors), so no LayerNorm is the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            s = p.std().item() if p.numel() > 1 else 0.0
            p += torch.randn(p.shape, generator=g) * (0.1 * s if s > 0 else 0.1)


def openclip_case(out_dir, tools, name, cfg, custom_text, save_style, seed):
    import open_clip
    case = os.path.join(out_dir, "openclip", name)
    os.makedirs(case, exist_ok=True)
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in cfg.items() if k != "custom_text"}
    model = (open_clip.model.CustomTextCLIP if custom_text else open_clip.model.CLIP)(**kwargs).eval()
    perturb(model, seed + 1)
    sd = dict(model.state_dict())
    if save_style == "wrapped":
        sd["attn_mask"] = model.attn_mask.clone()  # older checkpoints carry the causal mask buffer
        blob = {"state_dict": sd}
    else:
        blob = {"module." + k: v for k, v in sd.items()}
    pt = os.path.join(case, "checkpoint.pt")
    torch.save(blob, pt)
    cfg_path = os.path.join(case, "model_config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    subprocess.run([sys.executable, os.path.join(tools, "convert_openclip_checkpoint.py"), pt, "--config", cfg_path,
                    "--out", os.path.join(case, "folder"), "--force"], check=True, stdout=subprocess.DEVNULL)

    g = torch.Generator().manual_seed(seed + 2)
    vc, tc = cfg["vision_cfg"], cfg["text_cfg"]
    pixels = torch.randn(3, 3, vc["image_size"], vc["image_size"], generator=g)
    ctx, vocab = tc["context_length"], tc["vocab_size"]
    sot, eot = vocab - 2, vocab - 1
    ids = torch.zeros(4, ctx, dtype=torch.long)
    lengths = [3, ctx - 2, 1]
    for r, n in enumerate(lengths):
        words = torch.randint(1, vocab - 2, (n,), generator=g)
        row = torch.cat([torch.tensor([sot]), words, torch.tensor([eot])])[:ctx]
        ids[r, :len(row)] = row
    ids[3] = torch.randint(1, vocab - 2, (ctx,), generator=g)  # no end-of-text token: the rules differ
    for suffix, dtype in (("", torch.float32), ("_f64", torch.float64)):
        m = model.to(dtype)
        with torch.no_grad():
            img = m.encode_image(pixels.to(dtype))
            txt = m.encode_text(ids)
            img_n = img / img.norm(dim=-1, keepdim=True)
            txt_n = txt / txt.norm(dim=-1, keepdim=True)
            scale = m.logit_scale.exp()
            ref = {"image_features": img, "text_features": txt, "image_embeds": img_n, "text_embeds": txt_n,
                   "logit_scale_exp": scale, "logits_per_image": scale * img_n @ txt_n.t()}
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(case, f"reference{suffix}.safetensors"))
    save_file({"pixel_values": pixels, "input_ids": ids}, os.path.join(case, "inputs.safetensors"))


def openclip_vit_h_14_shapes(out_dir):
    """HPSv2's architecture at real size, on the meta device: OpenCLIP's config and every tensor's shape."""
    import open_clip
    case = os.path.join(out_dir, "openclip", "vit_h_14")
    os.makedirs(case, exist_ok=True)
    cfg = open_clip.get_model_config("ViT-H-14")
    with torch.device("meta"):
        model = open_clip.model.CLIP(**cfg)
    with open(os.path.join(case, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": cfg}, f, indent=1)
    with open(os.path.join(case, "tensor_shapes.json"), "w") as f:
        json.dump({k: list(v.shape) for k, v in model.state_dict().items()}, f, indent=1)


def aesthetic_case(out_dir, tools):
    import torch.nn as nn

    class MLP(nn.Module):  # improved-aesthetic-predictor's layer structure (no activations)
        def __init__(self, d):
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(d, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                        nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)

    case = os.path.join(out_dir, "aesthetic")
    os.makedirs(case, exist_ok=True)
    torch.manual_seed(3000)
    mlp = MLP(768).eval()
    pth = os.path.join(case, "head.pth")
    torch.save(mlp.state_dict(), pth)
    subprocess.run([sys.executable, os.path.join(tools, "convert_aesthetic_head.py"), pth,
                    os.path.join(case, "aesthetic_head.safetensors"), "--force"], check=True, stdout=subprocess.DEVNULL)
    emb = torch.randn(5, 768, generator=torch.Generator().manual_seed(3001)) * 3
    emb[2] = 0
    # The reference's normalisation (numpy): x / ||x||, a zero norm replaced by 1.
    norm = emb.norm(dim=-1, keepdim=True)
    norm[norm == 0] = 1
    with torch.no_grad():
        scores = mlp(emb / norm).squeeze(-1)
    save_file({"image_embeds": emb, "scores": scores}, os.path.join(case, "reference.safetensors"))


def vae_f64_case(out_dir, golden, set_name):
    src = os.path.join(golden, "vae_tiny")
    if not os.path.isdir(src):
        print(f"note: {src} missing, no diffusers float64 VAE reference")
        return
    from diffusers import AutoencoderKL
    case = os.path.join(out_dir, "vae_f64", set_name)
    os.makedirs(case, exist_ok=True)
    vae = AutoencoderKL.from_pretrained(src).double().eval()
    inp = load_file(os.path.join(src, "inputs.safetensors"))
    with torch.no_grad():
        post = vae.encode(inp["image"].double()).latent_dist
        ref = {"posterior_mean": post.mean, "posterior_logvar": post.logvar, "posterior_std": post.std,
               "decoded": vae.decode(inp["latents"].double()).sample,
               "reconstruction": vae(inp["image"].double(), sample_posterior=False).sample}
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(case, "outputs.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tools", required=True)
    ap.add_argument("--golden-root", required=True, help="the build's golden folder, one subfolder per set")
    ap.add_argument("--sets", nargs="+", default=["main"])
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    vit = {"embed_dim": 24, "quick_gelu": False,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
           "text_cfg": {"context_length": 12, "vocab_size": 1000, "width": 16, "heads": 2, "layers": 2}}
    custom = {"embed_dim": 20, "quick_gelu": True, "custom_text": True,
              "vision_cfg": {"image_size": 24, "layers": 3, "width": 24, "head_width": 12, "patch_size": 6,
                             "mlp_ratio": 2.0},
              "text_cfg": {"context_length": 9, "vocab_size": 500, "width": 32, "heads": 4, "layers": 1,
                           "pool_type": "eos", "eos_id": 499}}
    openclip_case(args.out, args.tools, "vit", vit, False, "wrapped", 2500)
    openclip_case(args.out, args.tools, "custom_text", custom, True, "ddp", 2600)
    openclip_vit_h_14_shapes(args.out)
    aesthetic_case(args.out, args.tools)
    # One float64 rerun per reference set; PREFDIFF_GOLDEN_DIR (another set of the same layout) replaces
    # every set, as it does in the C++ tests.
    override = os.environ.get("PREFDIFF_GOLDEN_DIR")
    for set_name in args.sets:
        vae_f64_case(args.out, override or os.path.join(args.golden_root, set_name), set_name)
    print(f"references in {args.out}")


if __name__ == "__main__":
    main()
