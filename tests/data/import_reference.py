#!/usr/bin/env python3
"""Inputs and independent references for the end-to-end import test (test_import_end_to_end.cpp).

Writes into --out:
  images/1.webp..4.webp        the real ImageReward generations of tests/fixtures/public/imagereward_images
  images/truncated.webp        4.webp cut in half (an import must skip it, count it and list it)
  imagereward.json             two ranking groups: the real 4-image group, and one naming a missing and the
                               truncated image with a caption longer than 77 tokens
  pickapic.parquet             a Pick-a-Pic v2-style table (pyarrow) with JPEG bytes in jpg_0 / jpg_1
  reference.safetensors        what diffusers' AutoencoderKL and transformers' CLIPTextModel give for one
                               imported image of each source and one caption, in float32 and float64
                               (their difference is the float32 error the test's tolerance is built from)
  reference.json               the keys, captions and the resolution used
  models/other_weights         the model with one VAE weight changed (same shapes): another vae_id
  models/missing_tensor        the model without the VAE's encoder.conv_in.weight
  models/misshaped_tensor      the model with text_encoder's final_layer_norm.weight one element short

The preprocessing is the official Diffusion-DPO script's (torchvision on a PIL image): Resize(resolution,
BILINEAR), CenterCrop(resolution), ToTensor, Normalize([0.5], [0.5]); no flip. Latents are the posterior
mean times scaling_factor, as the diffusers training scripts store them.
"""
import argparse
import io
import json
import os
import shutil

import torch

torch.set_num_threads(1)


def preprocess(image, resolution):
    from torchvision import transforms

    t = transforms.Compose([
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize([0.5], [0.5]),
    ])
    return t(image.convert("RGB")).unsqueeze(0)


def write_broken_models(model, root):
    """Copies of the model folder (vae/, text_encoder/, tokenizer/) with one defect each."""
    from safetensors.torch import load_file, save_file

    def copy(name):
        target = os.path.join(root, name)
        for part in ("vae", "text_encoder", "tokenizer"):
            shutil.copytree(os.path.join(model, part), os.path.join(target, part), dirs_exist_ok=True)
        return target

    vae_file = os.path.join("vae", "diffusion_pytorch_model.safetensors")
    text_file = os.path.join("text_encoder", "model.safetensors")
    other = copy("other_weights")
    weights = load_file(os.path.join(other, vae_file))
    weights["encoder.conv_in.bias"] = weights["encoder.conv_in.bias"] + 0.25
    save_file(weights, os.path.join(other, vae_file))
    missing = copy("missing_tensor")
    weights = load_file(os.path.join(missing, vae_file))
    del weights["encoder.conv_in.weight"]
    save_file(weights, os.path.join(missing, vae_file))
    misshaped = copy("misshaped_tensor")
    weights = load_file(os.path.join(misshaped, text_file))
    weights["text_model.final_layer_norm.weight"] = weights["text_model.final_layer_norm.weight"][:-1].clone()
    save_file(weights, os.path.join(misshaped, text_file))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="pipeline_sd15_tiny of a golden set")
    ap.add_argument("--public", required=True, help="tests/fixtures/public")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file
    from transformers import CLIPTextModel, CLIPTokenizer

    images = os.path.join(args.out, "images")
    os.makedirs(images, exist_ok=True)
    for k in range(1, 5):
        shutil.copyfile(os.path.join(args.public, "imagereward_images", f"{k}.webp"), os.path.join(images, f"{k}.webp"))
    with open(os.path.join(images, "4.webp"), "rb") as f:
        data = f.read()
    with open(os.path.join(images, "truncated.webp"), "wb") as f:
        f.write(data[: len(data) // 2])

    caption = "a painting of an ocean with clouds and birds, day time, low depth field effect"
    long_caption = " ".join(["a very long caption about a red fox in a snowy forest at dawn"] * 12)
    groups = [
        {"id": "ocean", "prompt": caption, "generations": ["1.webp", "2.webp", "3.webp", "4.webp"], "ranking": [1, 2, 3, 4]},
        {"id": "broken", "prompt": long_caption, "generations": ["2.webp", "missing.webp", "truncated.webp"],
         "ranking": [1, 2, 3]},
    ]
    with open(os.path.join(args.out, "imagereward.json"), "w") as f:
        json.dump(groups, f)

    # Pick-a-Pic v2 rows carry JPEG bytes; made here from the real images with Pillow.
    def jpeg(k):
        buffer = io.BytesIO()
        Image.open(os.path.join(images, f"{k}.webp")).convert("RGB").save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()

    rows = {
        "caption": ["an ocean with birds", "clouds over the sea", "a tie that is dropped"],
        "label_0": [1.0, 0.0, 0.5], "label_1": [0.0, 1.0, 0.5],
        "has_label": [True, True, True], "are_different": [True, True, True],
        "image_0_uid": ["pp-1", "pp-3", "pp-1"], "image_1_uid": ["pp-2", "pp-4", "pp-4"],
        "model_0": ["m0", "m0", "m0"], "model_1": ["m1", "m1", "m1"],
        "ranking_id": [1, 2, 3], "user_id": [7, 8, 9], "num_example_per_prompt": [1, 1, 1],
        "created_at": [0.0, 0.0, 0.0],
        "jpg_0": [jpeg(1), jpeg(3), jpeg(1)], "jpg_1": [jpeg(2), jpeg(4), jpeg(4)],
    }
    pq.write_table(pa.table(rows), os.path.join(args.out, "pickapic.parquet"))

    write_broken_models(args.model, os.path.join(args.out, "models"))

    vaes = {dtype: AutoencoderKL.from_pretrained(os.path.join(args.model, "vae"), torch_dtype=dtype).eval()
            for dtype in (torch.float32, torch.float64)}
    resolution = int(vaes[torch.float32].config.sample_size)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(args.model, "tokenizer"))
    texts = {dtype: CLIPTextModel.from_pretrained(os.path.join(args.model, "text_encoder"), torch_dtype=dtype).eval()
             for dtype in (torch.float32, torch.float64)}
    out = {}
    with torch.no_grad():
        pixels = {
            "ir_2": preprocess(Image.open(os.path.join(images, "2.webp")), resolution),
            "pp_3": preprocess(Image.open(io.BytesIO(jpeg(3))), resolution),
        }
        for name, x in pixels.items():
            for dtype, suffix in ((torch.float32, ""), (torch.float64, "_f64")):
                vae = vaes[dtype]
                out[f"latent_{name}{suffix}"] = (vae.encode(x.to(dtype)).latent_dist.mean * vae.config.scaling_factor).to(dtype)[0]
        ids = tokenizer([caption, long_caption], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        for dtype, suffix in ((torch.float32, ""), (torch.float64, "_f64")):
            hidden = texts[dtype](ids).last_hidden_state
            out[f"embeds{suffix}"] = hidden[0].contiguous()
            out[f"embeds_long{suffix}"] = hidden[1].contiguous()
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(args.out, "reference.safetensors"))
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump({"model": os.path.abspath(args.model), "caption": caption, "long_caption": long_caption, "resolution": resolution,
                   "long_caption_tokens": int(len(tokenizer(long_caption).input_ids)),
                   "latents": {"ir_2": {"source": "imagereward", "image": "2.webp"},
                               "pp_3": {"source": "pick-a-pic", "uid": "pp-3"}}}, f, indent=1)


if __name__ == "__main__":
    main()
