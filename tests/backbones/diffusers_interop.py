"""diffusers <-> prefdiff interop, run by ctest with the project's venv python.

1. prefdiff writes tiny SD1.5/SDXL-structured UNet folders (unet_interop_tool write); diffusers'
   UNet2DConditionModel.from_pretrained must load them and reproduce prefdiff's outputs.
2. diffusers writes folders (plain, sharded with an index, fp16 variant) of models built from the golden
   configs with the golden weights; prefdiff must load them and reproduce diffusers' outputs.
Fails (exit 1) when diffusers is missing: this test exists to exercise diffusers itself.
"""
import argparse
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

try:
    from diffusers import UNet2DConditionModel
except ImportError as e:  # not a skip: the check is meaningless without diffusers
    print(f"FAIL: diffusers is not importable from {sys.executable}: {e}\n"
          "HINT: configure with -DPython3_EXECUTABLE=<venv with diffusers>/bin/python", file=sys.stderr)
    sys.exit(1)

failures = []


def close(name, a, b, atol=1e-4, rtol=1e-4):
    err = (a.double() - b.double()).abs()
    ok = bool((err <= atol + rtol * b.double().abs()).all())
    print(f"  {name:55s} max|a-b| {err.max().item():.3g} {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(name)


def forward(unet, inputs):
    kw = {}
    if "text_embeds" in inputs:
        kw["added_cond_kwargs"] = {"text_embeds": inputs["text_embeds"], "time_ids": inputs["time_ids"]}
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"], **kw).sample


def full_size(args):
    """diffusers builds and saves a full-size model; prefdiff loads it and must reproduce its output."""
    import json
    print("full size: diffusers -> prefdiff")
    with open(args.full_config) as f:
        config = json.load(f)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    with torch.no_grad():  # perturb norms (init 1/0) so that a swapped weight/bias cannot pass
        for n, p in unet.named_parameters():
            if "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    d = os.path.join(args.work, "full")
    unet.save_pretrained(os.path.join(d, "unet"))
    xdim = unet.config.cross_attention_dim
    inputs = {"sample": torch.randn(1, 4, 64, 64), "timestep": torch.tensor([500]),
              "encoder_hidden_states": torch.randn(1, 77, xdim if isinstance(xdim, int) else xdim[-1])}
    ref = forward(unet, inputs)
    del unet
    save_file(inputs, os.path.join(d, "inputs.safetensors"))
    if subprocess.run([args.tool, "check", d]).returncode != 0:
        failures.append("full size: prefdiff failed to load")
        return
    close("full size: prefdiff forward vs diffusers", load_file(os.path.join(d, "prefdiff_out.safetensors"))["out"], ref)
    shutil.rmtree(d, ignore_errors=True)  # 3.4 GB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--full-config", help="also check a full-size model built from this config.json (slow)")
    args = ap.parse_args()
    args.golden = os.environ.get("PREFDIFF_GOLDEN_DIR") or args.golden  # same override as the C++ tests
    torch.set_num_threads(2)
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)

    print("prefdiff -> diffusers")
    subprocess.run([args.tool, "write", args.work], check=True)
    for case in ("prefdiff_sd15", "prefdiff_sdxl"):
        d = os.path.join(args.work, case)
        unet = UNet2DConditionModel.from_pretrained(os.path.join(d, "unet")).eval()
        weights = load_file(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
        sd = unet.state_dict()
        if set(sd) != set(weights):
            failures.append(f"{case}: key sets differ: {sorted(set(sd) ^ set(weights))[:5]}")
        for k, v in weights.items():
            if not torch.equal(sd[k], v):
                failures.append(f"{case}: {k} changed on load")
        close(f"{case}: diffusers forward vs prefdiff", forward(unet, load_file(os.path.join(d, "inputs.safetensors"))),
              load_file(os.path.join(d, "outputs.safetensors"))["out"])

    print("diffusers -> prefdiff")
    for name in ("unet_sd15_tiny", "unet_sdxl_tiny"):
        g = os.path.join(args.golden, name)
        inputs = load_file(os.path.join(g, "inputs.safetensors"))
        inputs.pop("grad_output")
        unet = UNet2DConditionModel.from_pretrained(g).eval()  # the golden folder as diffusers wrote it
        for layout, kw, variant in (("plain", {}, None),
                                    ("sharded", {"max_shard_size": "200KB"}, None),
                                    ("fp16", {"variant": "fp16"}, "fp16")):
            d = os.path.join(args.work, f"diffusers_{name}_{layout}")
            model = unet.half() if variant else unet.float()
            model.save_pretrained(os.path.join(d, "unet"), **kw)
            if layout == "sharded" and not os.path.exists(
                    os.path.join(d, "unet", "diffusion_pytorch_model.safetensors.index.json")):
                failures.append(f"{name}: diffusers did not shard; the sharded case tests nothing")
            ref = forward(unet.float(), inputs)
            save_file(inputs, os.path.join(d, "inputs.safetensors"))
            cmd = [args.tool, "check", d] + ([variant] if variant else [])
            if subprocess.run(cmd).returncode != 0:
                failures.append(f"{name} {layout}: prefdiff failed to load")
                continue
            out = load_file(os.path.join(d, "prefdiff_out.safetensors"))["out"]
            # fp16: prefdiff loads the half weights into float32; `unet` (round-tripped through half) holds the same.
            close(f"{name} {layout}: prefdiff forward vs diffusers", out, ref)
        # And the golden reference output itself, through prefdiff's load of diffusers' plain save.
        out = load_file(os.path.join(args.work, f"diffusers_{name}_plain", "prefdiff_out.safetensors"))["out"]
        close(f"{name}: prefdiff vs golden out", out, load_file(os.path.join(g, "outputs.safetensors"))["out"])

    if args.full_config:
        full_size(args)

    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)
    print("all interop checks passed")


if __name__ == "__main__":
    main()
