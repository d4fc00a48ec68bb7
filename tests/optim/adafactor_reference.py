"""Reference trajectories for prefdiff's Adafactor, in float64, from the equations of
Shazeer & Stern 2018 ("Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", Algorithms 4 and 5),
with the options of transformers' Adafactor(scale_parameter=False, relative_step=False, beta1=None) and
decoupled weight decay p <- p - lr*wd*p.

Written independently of the C++ code: plain numpy, one matrix at a time, the paper's row and column SUMS
(R = (G^2 + eps1) 1_m, C = 1_n^T (G^2 + eps1), V = R C / (1_n^T R)); a tensor of ndim > 2 is a stack of
independent matrices over its leading dims. The C++ side keeps row/column MEANS, so the state is written
here as R / m and C / n.

Usage: adafactor_reference.py OUT.json
"""
import json
import sys

import numpy as np


def rms(x):
    return float(np.sqrt(np.mean(x * x)))


def step_matrix(x, g, R, C, t, o):
    """One step on a 2-D parameter x (n x m) with gradient g; R (n), C (m) are the running sums."""
    b2 = 1.0 - t ** o["decay_rate"]  # beta2 hat of Algorithm 4 with the decay schedule 1 - t^c
    g2 = g * g + o["eps1"]
    R = b2 * R + (1.0 - b2) * g2.sum(axis=1)
    C = b2 * C + (1.0 - b2) * g2.sum(axis=0)
    V = np.outer(R, C) / R.sum()
    return R, C, g / np.sqrt(V)


def step_vector(g, V, t, o):
    b2 = 1.0 - t ** o["decay_rate"]
    V = b2 * V + (1.0 - b2) * (g * g + o["eps1"])
    return V, g / np.sqrt(V)


def run_case(name, shape, steps, o, rng, zero_row=False, zero_entries=False, burst_step=None):
    # Inputs exactly representable in float32, so that the C++ float32 and float64 runs start from the
    # same numbers as this float64 reference.
    p = rng.standard_normal(shape).astype(np.float32).astype(np.float64)
    grads = []
    for t in range(1, steps + 1):
        g = rng.standard_normal(shape) * (0.5 + 0.1 * t)
        if burst_step == t:  # a gradient far above the running second moment: update clipping engages
            g = g * 30.0
        if zero_entries:
            g.reshape(-1)[::3] = 0.0
        if zero_row and len(shape) >= 2:
            g[..., 0, :] = 0.0  # a whole row without gradient: only eps1 keeps R away from 0
        grads.append(g.astype(np.float32).astype(np.float64))

    x = p.copy()
    factored = len(shape) >= 2
    if factored:
        lead = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        n, m = shape[-2], shape[-1]
        R = np.zeros((lead, n))
        C = np.zeros((lead, m))
    else:
        V = np.zeros(shape)
    params, clipped = [], []
    for t, g in enumerate(grads, start=1):
        if factored:
            xs, gs = x.reshape(lead, n, m), g.reshape(lead, n, m)
            U = np.empty_like(xs)
            for k in range(lead):
                R[k], C[k], U[k] = step_matrix(xs[k], gs[k], R[k], C[k], t, o)
            U = U.reshape(shape)
        else:
            V, U = step_vector(g, V, t, o)
        d = max(1.0, rms(U) / o["clip_threshold"])  # Algorithm 4's update clipping
        clipped.append(d > 1.0)
        U = U / d
        x = x - o["lr"] * o["weight_decay"] * x - o["lr"] * U
        params.append(x.reshape(-1).tolist())

    case = {
        "name": name,
        "shape": list(shape),
        "options": o,
        "p0": p.reshape(-1).tolist(),
        "grads": [g.reshape(-1).tolist() for g in grads],
        "params": params,
        "clipped": clipped,
    }
    if factored:
        case["state_row"] = (R / m).reshape(-1).tolist()  # shape[:-1]
        case["state_col"] = (C / n).reshape(-1).tolist()  # shape[:-2] + shape[-1:]
    else:
        case["state"] = V.reshape(-1).tolist()
    return case


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(20240607)
    official = {"lr": 1e-2, "eps1": 1e-30, "eps2": 1e-3, "clip_threshold": 1.0, "decay_rate": -0.8, "weight_decay": 1e-2}
    other = {"lr": 3e-2, "eps1": 1e-6, "eps2": 1e-3, "clip_threshold": 0.5, "decay_rate": -0.6, "weight_decay": 0.1}
    cases = [
        run_case("vector", (7,), 6, official, rng, burst_step=4),
        run_case("matrix", (5, 3), 6, official, rng, burst_step=4, zero_row=True),
        run_case("conv4d", (2, 3, 4, 5), 6, official, rng, burst_step=3, zero_entries=True),
        run_case("column", (6, 1), 5, official, rng),
        run_case("matrix_other_options", (4, 6), 5, other, rng, burst_step=2),
        run_case("vector_other_options", (9,), 5, other, rng, zero_entries=True),
    ]
    assert any(any(c["clipped"]) for c in cases), "no case exercises update clipping"
    with open(out, "w") as f:
        json.dump({"cases": cases}, f)  # json writes float64 with repr: round-trips exactly


if __name__ == "__main__":
    main()
