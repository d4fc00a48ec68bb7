"""aesthetic_mlp_tiny: the LAION aesthetic predictor's MLP head (christophschuhmann/improved-aesthetic-predictor,
released as sac+logos+ava1-l14-linearMSE.pth) on tiny CLIP image embeddings."""
import copy

import open_clip
import torch
from torch import nn

from .. import compare, st_io
from ..models import perturb
from . import open_clip_tiny
from .clip_model import load_rgb

SEED = 2800
HIDDEN = [1024, 128, 64, 16]


class AestheticMLP(nn.Module):
    """The released head: Linear(d,1024), Dropout(0.2), Linear(1024,128), Dropout(0.2), Linear(128,64),
    Dropout(0.1), Linear(64,16), Linear(16,1); no activations (the ReLUs are commented out in the source)."""

    def __init__(self, input_size):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


def normalized(x):
    """simple_inference.py's numpy L2 normalisation: a zero row stays zero (its norm is replaced by 1)."""
    n = x.norm(dim=-1, keepdim=True)
    return x / torch.where(n == 0, torch.ones_like(n), n)


def run(head, features, dtype):
    m = copy.deepcopy(head).to(dtype)
    x = features.to(dtype).clone().requires_grad_(True)
    taps = {}
    hooks = [m.layers[i].register_forward_hook(lambda _m, _i, o, i=i: taps.__setitem__(f"layers.{i}", o.detach()))
             for i in (0, 2, 4, 6)]
    e = normalized(x)
    score = m(e)
    score.sum().backward()
    for h in hooks:
        h.remove()
    out = {"normalized": e.detach(), "score": score.detach(), "grad.image_features": x.grad.detach()}
    out.update({f"inter.{k}": v for k, v in taps.items()})
    return out


def generate(ctx):
    p = ctx.p
    d = ctx.dir("aesthetic_mlp_tiny")
    clip, cfg = open_clip_tiny.build(ctx)
    dim = cfg["embed_dim"]
    torch.manual_seed(ctx.seed(SEED))
    head = AestheticMLP(dim).eval()
    perturb(head, ctx.seed(SEED + 1))
    st_io.write(d / "model.safetensors", head.state_dict(), ctx.metadata(format="pt", init_seed=ctx.seed(SEED),
                                                                         perturb_seed=ctx.seed(SEED + 1)))
    ctx.write_json(d / "config.json", {"input_size": dim, "layers": "Linear(input_size,1024), Dropout(0.2), Linear(1024,128), "
                                       "Dropout(0.2), Linear(128,64), Dropout(0.1), Linear(64,16), Linear(16,1)",
                                       "hidden": HIDDEN, "activation": None, "input": "L2-normalised CLIP image embedding"})
    # Real rows: the open_clip_tiny model's image features of the set's images; then random rows, one of them zero.
    preprocess = open_clip.image_transform(p.open_clip_image_size, is_train=False)
    with torch.no_grad():
        real = clip.encode_image(torch.stack([preprocess(load_rgb(n)) for n in p.open_clip_images]))
    g = torch.Generator().manual_seed(ctx.seed(SEED + 2))
    extra = torch.randn(p.aesthetic_batch - len(real), dim, generator=g)
    extra[-1] = 0
    features = torch.cat([real, extra])
    st_io.write(d / "inputs.safetensors", {"image_features": features},
                ctx.metadata(images=list(p.open_clip_images), random_seed=ctx.seed(SEED + 2)))
    f32 = run(head, features, torch.float32)
    f64 = run(head, features, torch.float64)
    st_io.write(d / "outputs.safetensors", f32, ctx.metadata(dtype_run="float32"))
    st_io.write_f64(d / "outputs_f64.safetensors", f64, ctx.metadata(dtype_run="float64"))
    entries = compare.stats_all(f32, f64)
    ctx.write_json(d / "f32_vs_f64.json", {"f32_vs_f64": entries})
    tol = compare.Tolerances("aesthetic_mlp_tiny")
    tol.add("normalized, score, intermediates", compare.Elementwise(1e-4, 1e-4),
            [(n, f32[n], f64[n]) for n in f32 if "grad" not in n])
    tol.add("grad.image_features", compare.MaxNorm(1e-4, 1e-6), [("grad.image_features", f32["grad.image_features"],
                                                                f64["grad.image_features"])])
    layout = "\n".join(f"  - `{k}` {list(v.shape)}" for k, v in head.state_dict().items())
    body = f"""
## Model

The MLP head of the LAION aesthetic predictor v2 (christophschuhmann/improved-aesthetic-predictor
`simple_inference.py`; the released weights `sac+logos+ava1-l14-linearMSE.pth` are this module's `state_dict()` with
input size 768, the width of OpenAI CLIP ViT-L/14 image embeddings):

```python
nn.Sequential(nn.Linear(input_size, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
              nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))   # attribute name `layers`
```

No activation between the Linear layers (the ReLUs are commented out in the source: the head is an affine map, kept
as five layers so that the released file loads). Dropout is inactive at inference. Keys and shapes here (input size
{dim} = `open_clip_tiny`'s embedding width; the released file has the same keys with 768 inputs):

{layout}

Weights: `torch.manual_seed({ctx.seed(SEED)})`, construct, perturb as in clip_text_tiny with
`Generator().manual_seed({ctx.seed(SEED + 1)})`. `model.safetensors` = `state_dict()`; `config.json` describes the layout.

## Scoring (as `simple_inference.py`)

`image_features = clip.encode_image(preprocess(image))`; `e = image_features / ||image_features||` (numpy L2
normalisation with a zero norm replaced by 1, so a zero row stays zero); `score = layers(e)` [N, 1].

## Inputs (`inputs.safetensors`)

- `image_features` F32[{len(features)}, {dim}]: rows 0..{len(real) - 1} = `open_clip_tiny.encode_image` of
  {', '.join(p.open_clip_images)} (preprocessed as in open_clip_tiny); then `randn(generator=Generator().manual_seed({ctx.seed(SEED + 2)}))`
  rows, the last one set to zero (exercises the zero-norm guard)

## Outputs (`outputs.safetensors`, float32)

- `normalized` [N, {dim}], `score` [N, 1], `inter.layers.{{0,2,4,6}}` (outputs of the first four Linear layers)
- `grad.image_features` = d(sum(score))/d(image_features) (through the normalisation; reward-gradient methods need it)

{st_io.tensor_list(d / 'outputs.safetensors')}

`outputs_f64.safetensors`: the same from a float64 copy.

## float32 vs float64 (observed)

{compare.table(entries)}

## Recommended tolerances (C++ float32 vs these goldens)

{tol.markdown()}
"""
    ctx.write_readme("aesthetic_mlp_tiny", body)
    ctx.note("aesthetic_mlp_tiny", f"LAION aesthetic predictor MLP head (released layer layout) on {dim}-wide CLIP image "
             f"embeddings: normalisation, score, intermediates, input gradient; {len(features)} rows", tol)
