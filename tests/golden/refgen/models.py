"""Weight recipe shared by every tiny model: default init under a seed, then a seeded perturbation so that no
tensor is zero or constant (a swapped weight/bias or a skipped norm cannot pass a test)."""
import torch


def perturb(model, seed, scale=0.1, only=None):
    """For every parameter in named_parameters() order (or only those for which `only(name, p)` is true):
    p += randn(p.shape, generator=Generator().manual_seed(seed)) * s, s = scale*std(p), or `scale` where p is
    constant (GroupNorm/LayerNorm 1 and 0, biases initialised to 0, 0-d parameters). One generator for all."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if only is not None and not only(name, p):
                continue
            constant = p.numel() <= 1 or bool(p.min() == p.max())
            s = scale if constant else scale * p.std().item()
            p.add_((torch.randn(p.shape, generator=g) * s).to(p.dtype))
    return model


def grads_of(model, names, prefix="param_grad."):
    params = dict(model.named_parameters())
    return {prefix + n: params[n].grad.detach().clone() for n in names}


def tap_outputs(model, modules):
    """Forward hooks storing each named submodule's output (first element of tuples) into the returned dict."""
    taps, handles = {}, []
    sub = dict(model.named_modules())
    for name in modules:
        def hook(_m, _i, out, name=name):
            taps[name] = (out[0] if isinstance(out, tuple) else out).detach().clone()
        handles.append(sub[name].register_forward_hook(hook))
    return taps, handles
