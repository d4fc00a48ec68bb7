"""Shared by the pipeline cases: run a diffusers text-to-image pipeline recording every step, and lay out its
folder as a downloaded model repository (model_index.json + one folder per component)."""
import json
import shutil

import torch

from ..context import PUBLIC

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def run(pipe, kwargs, dtype):
    """Returns (outputs, timesteps, callback tensors of the first step). `kwargs` are the pipeline arguments without
    output_type. Step latents come from callback_on_step_end, raw UNet outputs from a forward hook."""
    steps, unet_out, first = [], [], {}
    inputs = list(kwargs.pop("tensor_inputs"))

    def callback(_pipe, i, _t, tensors):
        steps.append(tensors["latents"].detach().clone())
        if i == 0:
            first.update({k: v.detach().clone() for k, v in tensors.items()})
        return {}
    handle = pipe.unet.register_forward_hook(lambda _m, _i, out: unet_out.append(out[0].detach().clone()))
    with torch.no_grad():
        image = pipe(**kwargs, output_type="pt" if dtype == torch.float64 else "np", callback_on_step_end=callback,
                     callback_on_step_end_tensor_inputs=inputs).images
    handle.remove()
    n = len(steps)
    with torch.no_grad():
        final = pipe(**kwargs, output_type="latent").images
    image = torch.as_tensor(image)
    if dtype == torch.float64:
        image = image.permute(0, 2, 3, 1)  # "pt" is NCHW; "np" (the float32 run) is NHWC
    with torch.no_grad():
        decoded = pipe.vae.decode(final / pipe.vae.config.scaling_factor).sample
    out = {"step_latents": torch.stack(steps), "step_unet_out": torch.stack(unet_out[:n]), "final_latents": final,
           "decoded": decoded, "image": image.to(dtype)}
    if not torch.equal(out["step_latents"][-1], final):
        raise RuntimeError("the last step's latents differ from output_type='latent'")
    return out, pipe.scheduler.timesteps.clone(), first


def write_tokenizer(ctx, d, pad_token=None):
    """The public tokenizer files; with pad_token "!" as SDXL's tokenizer_2 folder has them."""
    for f in TOKENIZER_FILES:
        d.mkdir(parents=True, exist_ok=True)
        if pad_token is None or f in ("vocab.json", "merges.txt"):
            shutil.copyfile(PUBLIC / "clip_tokenizer" / f, d / f)  # a copy: never a link into the source tree
            continue
        cfg = json.loads((PUBLIC / "clip_tokenizer" / f).read_text())
        cfg["pad_token"] = pad_token
        (d / f).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")


def link_model(ctx, case, d):
    """A component folder = the files of another case of this set, byte-identical."""
    src = ctx.out / case
    for f in ("config.json", "diffusion_pytorch_model.safetensors", "model.safetensors"):
        if (src / f).exists():
            ctx.link(src / f, d / f)


def max_abs(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if k in b)
