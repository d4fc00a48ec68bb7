"""LoRA interop with diffusers and peft, run by ctest with the project's venv python (both reference sets).

1. prefdiff adds adapters (rank 4, alpha 8: alpha != rank; attention projections, ff.net.2 and the resnets'
   conv1) to the golden tiny SD1.5 UNet and writes pytorch_lora_weights.safetensors; diffusers' loader
   (StableDiffusionPipeline.lora_state_dict + load_lora_into_unet, what load_lora_weights runs) must give
   prefdiff's output. Saved without its lora_adapter_metadata, the output must differ (the check can fail).
2. peft adds a LoRA (rank 4, alpha 2) as the Diffusion-DPO example does, diffusers saves it with its adapter
   metadata; prefdiff must load it and give diffusers' output.
Tolerance: outputs |a-b| <= 1e-4 + 1e-4|b| (lora_sd15_tiny README; float32 vs float64 error ~1e-6).
"""
import argparse
import copy
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file, safe_open, save_file

try:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
except ImportError as e:  # not a skip: the check is meaningless without them
    print(f"FAIL: diffusers/peft not importable from {sys.executable}: {e}", file=sys.stderr)
    sys.exit(1)

failures = []


def close(name, a, b, atol=1e-4, rtol=1e-4):
    err = (a.double() - b.double()).abs()
    ok = bool((err <= atol + rtol * b.double().abs()).all())
    print(f"  {name:60s} max|a-b| {err.max().item():.3g} {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(name)


def forward(unet, x):
    with torch.no_grad():
        return unet(x["sample"], x["timestep"], x["encoder_hidden_states"]).sample


def with_lora(base, folder, weight_name):
    sd, alphas, meta = StableDiffusionPipeline.lora_state_dict(folder, weight_name=weight_name, return_lora_metadata=True)
    unet = copy.deepcopy(base)
    StableDiffusionPipeline.load_lora_into_unet(sd, alphas, unet, metadata=meta)
    return unet.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    base_dir = os.path.join(args.golden, "unet_sd15_tiny")
    base = UNet2DConditionModel.from_pretrained(base_dir).eval()

    print("prefdiff -> diffusers")
    d = os.path.join(args.work, "prefdiff_lora")
    subprocess.run([args.tool, "write", base_dir, d], check=True)
    x = load_file(os.path.join(d, "inputs.safetensors"))
    ours = load_file(os.path.join(d, "outputs.safetensors"))["out"]
    theirs = forward(with_lora(base, d, "pytorch_lora_weights.safetensors"), x)
    close("diffusers load_lora_weights(prefdiff file) vs prefdiff", theirs, ours)
    # Without the metadata diffusers assumes alpha = rank: the output must change (the check above can fail).
    with safe_open(os.path.join(d, "pytorch_lora_weights.safetensors"), "pt") as f:
        bare = {k: f.get_tensor(k) for k in f.keys()}
    save_file(bare, os.path.join(d, "no_metadata.safetensors"), {"format": "pt"})
    lost = forward(with_lora(base, d, "no_metadata.safetensors"), x)
    change = (lost - ours).abs().max().item()
    print(f"  {'same file without lora_adapter_metadata (must differ)':60s} max|a-b| {change:.3g} "
          f"{'ok' if change > 1e-3 else 'FAIL'}")
    if change <= 1e-3:
        failures.append("metadata has no effect")

    print("peft/diffusers -> prefdiff")
    d2 = os.path.join(args.work, "peft_lora")
    os.makedirs(d2, exist_ok=True)
    lora = copy.deepcopy(base)
    lora.requires_grad_(False)
    torch.manual_seed(7)
    targets = ["to_k", "to_q", "to_v", "to_out.0"]
    lora.add_adapter(LoraConfig(r=4, lora_alpha=2, init_lora_weights="gaussian", target_modules=targets))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.05)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(lora))
    StableDiffusionPipeline.save_lora_weights(save_directory=d2, unet_lora_layers=layers, text_encoder_lora_layers=None,
                                              unet_lora_adapter_metadata={"r": 4, "lora_alpha": 2, "target_modules": targets})
    expected = forward(lora.eval(), x)
    out = os.path.join(d2, "prefdiff_out.safetensors")
    subprocess.run([args.tool, "check", base_dir, os.path.join(d2, "pytorch_lora_weights.safetensors"),
                    os.path.join(d, "inputs.safetensors"), out], check=True)
    close("prefdiff(diffusers-saved peft LoRA, alpha 2, r 4) vs peft", load_file(out)["out"], expected)

    if failures:
        print("FAILED: " + ", ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("all LoRA interop checks passed")


if __name__ == "__main__":
    main()
