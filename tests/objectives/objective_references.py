"""50-digit references for the ipo, mapo, dmpo and sdpo objective plugins (tests/objectives).

Written from the published definitions, independently of the plugins' stable forms: each loss is the
textbook formula evaluated with mpmath at 60 digits on the exact double inputs, and both derivatives are
mpmath's numerical derivatives of that loss (not the closed forms the plugins use). Every value is then
rounded once to the nearest double.

  ipo   l = (h/beta - 1/(2 beta))^2                 (TRL / diffusers loss_type 'ipo')
  dmpo  l = u log(u/q) + v log(v/(1-q)), q = 1-alpha (Diffusion-SDPO train.py, train_method 'dmpo')
  mapo  l = m_w - beta_mapo log sigma(T (psi(s m_w) - psi(s m_l))), psi(x) = x/(e^x - 1)  (mapo utils.py)
  sdpo  l = base(h~), h~ the margin at m_l~ = e_ll + lambda (m_l - e_ll) with the batch's lambda held
        fixed (Diffusion-SDPO train.py: model_losses_l.detach() + lambda * (model_losses_l - detach))
with h = -0.5 beta ((m_w - r_w) - (m_l - r_l)), u = sigma(h), v = 1 - u.

Usage: objective_references.py OUT.json
"""
import json
import math
import sys

import mpmath as mp

mp.mp.dps = 60


def to_double(x):
    return float(x)  # mpf -> float rounds to nearest


def mpf(x):
    return mp.mpf(float(x))  # exact: every input is a double


def margin(beta, mw, ml, rw, rl):
    return -mp.mpf(0.5) * beta * ((mw - rw) - (ml - rl))


def sigma(x):
    return 1 / (1 + mp.exp(-x))


def dmpo_loss(h, alpha):
    q = 1 - alpha
    u, v = sigma(h), sigma(-h)
    return u * mp.log(u / q) + v * mp.log(v / (1 - q))


def psi(x):
    return mp.mpf(1) if x == 0 else x / mp.expm1(x)


def derivative(f, x):
    return mp.diff(f, x)


# ---------------------------------------------------------------------------------------------- cases


def param(name, value, kind="float"):
    return {"name": name, "type": kind, "value": value}


def rows_at_margins(hs):
    """Inputs whose margin at beta = 2 is exactly h: model_w = -h, everything else 0."""
    return [{"model_w": -h, "model_l": 0.0, "ref_w": 0.0, "ref_l": 0.0} for h in hs]


MARGINS = [-50, -40, -30, -20, -10, -5, -3, -2, -1, -0.5, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.25, 0.5, 1, 2, 3, 5,
           10, 20, 30, 40, 50]


def per_pair_case(name, plugin, params, rows, loss):
    """A case whose loss is per pair: loss(mw, ml, rw, rl) in mpmath; derivatives numerical."""
    batch = {k: [r[k] for r in rows] for k in ("model_w", "model_l", "ref_w", "ref_l")}
    expected = {"loss": [], "dloss_dmodel_w": [], "dloss_dmodel_l": []}
    for r in rows:
        mw, ml, rw, rl = (mpf(r[k]) for k in ("model_w", "model_l", "ref_w", "ref_l"))
        expected["loss"].append(to_double(loss(mw, ml, rw, rl)))
        expected["dloss_dmodel_w"].append(to_double(derivative(lambda x: loss(x, ml, rw, rl), mw)))
        expected["dloss_dmodel_l"].append(to_double(derivative(lambda x: loss(mw, x, rw, rl), ml)))
    return {"name": name, "plugin": plugin, "params": params, "batch": batch, "expected": expected}


def ipo_cases():
    cases = []
    for beta in (2.0, 5000.0):
        b = mp.mpf(beta)
        if beta == 2.0:
            rows = rows_at_margins(MARGINS + [0.5 - 1e-9, 0.5 + 1e-9, 1e4, -1e4])
        else:  # realistic MSEs at the official beta: the margin is rounded, the reference uses the same inputs
            rows = [{"model_w": 0.3 + d, "model_l": 0.31, "ref_w": 0.305, "ref_l": 0.30}
                    for d in (-0.02, -4e-3, -1e-3, -2e-4, 0.0, 2e-4, 1e-3, 4e-3, 0.02)]
        cases.append(per_pair_case(f"ipo beta={beta:g}", "ipo", [param("beta", beta)], rows,
                                   lambda mw, ml, rw, rl, b=b: (margin(b, mw, ml, rw, rl) / b - 1 / (2 * b)) ** 2))
    return cases


def dmpo_cases():
    cases = []
    for alpha in (1e-6, 0.01, 0.1, 0.3, 0.49, 0.4999999):  # down to the released clamp, up to 1/2
        a = mpf(alpha)
        k = mp.log((1 - a) / a)
        near = [float(k + d) for d in (-2, -1.0000001, -1, -0.5, -1e-3, -1e-9, 0, 1e-9, 1e-3, 0.5, 1, 1.0000001, 2)]
        rows = rows_at_margins(MARGINS + near)
        case = per_pair_case(f"dmpo alpha={alpha!r}", "dmpo", [param("beta", 2.0), param("dmpo_alpha", alpha)],
                             rows, lambda mw, ml, rw, rl, a=a: dmpo_loss(margin(2, mw, ml, rw, rl), a))
        # The exact distance to the optimum, s = h - k, for the test's conditioning allowance near s = 0.
        case["target_distance"] = [float(margin(2, mpf(r["model_w"]), 0, 0, 0) - k) for r in rows]
        cases.append(case)
    # The official SD1.5 beta with realistic MSEs.
    rows = [{"model_w": 0.3 + d, "model_l": 0.31, "ref_w": 0.305, "ref_l": 0.30}
            for d in (-0.02, -4e-3, -1e-3, 0.0, 1e-3, 4e-3, 0.02)]
    cases.append(per_pair_case("dmpo beta=2000 alpha=0.01", "dmpo", [param("beta", 2000.0), param("dmpo_alpha", 0.01)],
                               rows, lambda mw, ml, rw, rl: dmpo_loss(margin(2000, mw, ml, rw, rl), mpf(0.01))))
    return cases


def mapo_cases():
    def loss_for(beta, s, t):
        def loss(mw, ml, rw, rl):
            z = t * (psi(s * mw) - psi(s * ml))
            return mw - beta * mp.log(sigma(z))
        return loss

    cases = []
    for beta, s, t in ((0.1, 0.5, 1000), (0.1, 1e-3, 1000), (2.0, 4.0, 1), (1e-4, 0.5, 1000)):
        bm, sm, tm = mpf(beta), mpf(s), mp.mpf(t)
        rows = []
        for ml in (0.05, 0.3, 1.0, 3.0):
            target = lambda mw, ml=ml: tm * (psi(sm * mw) - psi(sm * mpf(ml)))
            for z in (-50, -20, -5, -1, -1e-3, 0, 1e-3, 1, 5, 20, 50):
                # Solve for m_w (psi is decreasing); keep only reachable, non-negative errors.
                lo, hi = mp.mpf(0), mp.mpf(1e4)
                if not (target(hi) <= z <= target(lo)):
                    continue
                for _ in range(200):
                    mid = (lo + hi) / 2
                    if target(mid) > z:
                        lo = mid
                    else:
                        hi = mid
                rows.append({"model_w": float(lo), "model_l": ml, "ref_w": 0.0, "ref_l": 0.0})
        # Edges: zero errors, x = s m on both sides of the branch points +-1, errors so large psi underflows.
        for mw, ml in ((0.0, 0.0), (0.0, 0.3), (1 / s, 0.2), (math.nextafter(1 / s, 0), 0.2),
                       (math.nextafter(1 / s, 9), 0.2), (1e4, 0.3), (0.3, 1e4), (1e-300, 0.3)):
            rows.append({"model_w": mw, "model_l": ml, "ref_w": 0.0, "ref_l": 0.0})
        params = [param("beta_mapo", beta), param("snr_value", s), param("num_train_timesteps", t, "int")]
        case = per_pair_case(f"mapo beta_mapo={beta:g} snr_value={s:g} T={t}", "mapo", params, rows,
                             loss_for(bm, sm, tm))
        case["expected"]["margin"] = [to_double(tm * (psi(sm * mpf(r["model_w"])) - psi(sm * mpf(r["model_l"]))))
                                      for r in rows]
        cases.append(case)
    return cases


def sdpo_cases():
    """Batches of pairs with error Gram entries; lambda is a batch quantity held fixed in the derivatives."""
    cases = []

    def base_loss(base, h, alpha):
        return -mp.log(sigma(h)) if base == "dpo" else dmpo_loss(h, alpha)

    def case(name, params, rows, mu, eps, base, alpha, beta):
        s_ww = sum(mpf(r["error_ww"]) for r in rows)
        s_wl = sum(mpf(r["error_wl"]) for r in rows)
        lam = mp.mpf(1) if s_wl <= 0 else min(mp.mpf(1), max(mp.mpf(0), (1 - mpf(mu)) * s_ww / (s_wl + mpf(eps))))
        b = mpf(beta)
        a = mpf(alpha)
        batch = {k: [r[k] for r in rows] for k in rows[0]}
        expected = {"loss": [], "dloss_dmodel_w": [], "dloss_dmodel_l": [], "margin": [],
                    "diagnostics": [to_double(lam)]}
        for r in rows:
            mw, ml, rw, rl, ell = (mpf(r[k]) for k in ("model_w", "model_l", "ref_w", "ref_l", "error_ll"))
            loss = lambda x, y: base_loss(base, margin(b, x, ell + lam * (y - ell), rw, rl), a)
            expected["loss"].append(to_double(loss(mw, ml)))
            expected["dloss_dmodel_w"].append(to_double(derivative(lambda x: loss(x, ml), mw)))
            expected["dloss_dmodel_l"].append(to_double(derivative(lambda y: loss(mw, y), ml)))
            expected["margin"].append(to_double(margin(b, mw, ml, rw, rl)))
        cases.append({"name": name, "plugin": "sdpo", "params": params, "batch": batch, "expected": expected,
                      "lambda": to_double(lam)})

    def rows(hs, rho, consistent=True):
        """Pairs at margins hs with beta = 2 and positive errors: (m_w - r_w) - (m_l - r_l) = -h; error Gram
        entries with correlations rho_i (error_ll = 1.25 m_l when not consistent)."""
        out = []
        for i, h in enumerate(hs):
            rw, rl, a = 0.25 + 0.01 * (i % 5), 0.3, 0.02 * (i % 3)
            mw, ml = (rw + a - h, rl + a) if h < 0 else (rw + a, rl + a + h)
            ww, ll = mw, (ml if consistent else ml * 1.25)
            out.append({"model_w": mw, "model_l": ml, "ref_w": rw, "ref_l": rl, "error_ww": ww,
                        "error_wl": rho[i % len(rho)] * math.sqrt(ww * ll), "error_ll": ll})
        return out

    hs = [-50, -20, -5, -1, -1e-3, 0, 1e-3, 0.5, 1, 3, 10, 20, 50]
    def p(mu, base="dpo", eps=0.0, alpha=0.01, beta=2.0):
        return [param("beta", beta), param("winner_preserving_mu", mu), param("base_objective", base, "string"),
                param("dmpo_alpha", alpha), param("lambda_eps", eps)]

    aligned = [0.9, 0.8, 0.95, 0.7]
    balanced = [-1, -0.5, -1e-3, 0, 0.2, 0.5, 1, 2]  # |h| <= 2: error_ww ~ error_ll, so S_wl ~ S_ww
    case("sdpo dpo mu=0.9 (0 < lambda < 1)", p(0.9), rows(hs, aligned), 0.9, 0.0, "dpo", 0.01, 2.0)
    case("sdpo dpo mu=0.6 (SDXL)", p(0.6), rows(balanced, aligned), 0.6, 0.0, "dpo", 0.01, 2.0)
    case("sdpo dpo mu=0 (ratio > 1: lambda = 1)", p(0.0), rows(hs, [0.3, 0.2]), 0.0, 0.0, "dpo", 0.01, 2.0)
    case("sdpo dpo anti-aligned (S_wl < 0: lambda = 1)", p(0.9), rows(hs, [-0.9, -0.8]), 0.9, 0.0, "dpo", 0.01, 2.0)
    case("sdpo dpo mu=1 (lambda = 0)", p(1.0), rows(hs, aligned), 1.0, 0.0, "dpo", 0.01, 2.0)
    case("sdpo dpo lambda_eps=1e-3", p(0.9, eps=1e-3), rows(hs, aligned), 0.9, 1e-3, "dpo", 0.01, 2.0)
    case("sdpo dmpo mu=0.9 alpha=0.01", p(0.9, "dmpo"), rows(hs, aligned), 0.9, 0.0, "dmpo", 0.01, 2.0)
    case("sdpo dmpo mu=0.6 alpha=0.3", p(0.6, "dmpo", alpha=0.3), rows(balanced, aligned), 0.6, 0.0, "dmpo", 0.3, 2.0)
    case("sdpo dpo error_ll != model_l (h~ != h)", p(0.9), rows(hs, aligned, consistent=False), 0.9, 0.0, "dpo", 0.01, 2.0)
    return cases


def main():
    out = {"generator": "tests/objectives/objective_references.py", "mpmath_dps": mp.mp.dps,
           "cases": ipo_cases() + dmpo_cases() + mapo_cases() + sdpo_cases()}
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(out['cases'])} cases, "
          f"{sum(len(c['expected']['loss']) for c in out['cases'])} pairs to {sys.argv[1]}")


if __name__ == "__main__":
    main()
