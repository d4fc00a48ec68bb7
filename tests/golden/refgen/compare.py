"""float32-vs-float64 measurements and the tolerances the READMEs recommend.

Every recommended tolerance is checked here against the measured float32 error of the reference itself:
a correct float32 port differs from the float32 reference by up to about twice the reference's own
float32-vs-float64 difference (both carry float32 rounding), so generation fails when a measured
difference uses more than MARGIN of the tolerance it recommends. Tests take these tolerances, never ones
tuned on one lucky set.
"""
import torch

MARGIN = 0.5


def stats(a, ref):
    """The f32_vs_f64.json entry for `a` (float32 run) against `ref` (float64 run)."""
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    if a.shape != ref.shape:
        raise ValueError(f"shape {list(a.shape)} vs {list(ref.shape)}")
    d = (a - ref).abs()
    ref_max = ref.abs().max().item() if ref.numel() else 0.0
    max_abs = d.max().item() if d.numel() else 0.0
    mask = ref.abs() >= 0.01 * ref_max
    max_rel = (d[mask] / ref.abs()[mask]).max().item() if ref_max > 0 and mask.any() else 0.0
    norm = ref.norm().item()
    return {"shape": list(a.shape), "max_abs": max_abs, "ref_max_abs": ref_max,
            "max_abs_over_ref_max": max_abs / ref_max if ref_max > 0 else 0.0,
            "max_rel_where_ref>=1%max": max_rel, "rel_l2": (a - ref).norm().item() / norm if norm > 0 else 0.0}


def stats_all(f32, f64, names=None):
    names = names if names is not None else [n for n in f64 if n in f32 and f64[n].is_floating_point()]
    return {n: stats(f32[n], f64[n]) for n in names}


def table(entries, names=None):
    """Markdown table of stats entries (all, or the named ones in that order)."""
    rows = ["| tensor | shape | max abs diff | max abs of f64 | max_abs / max\\|f64\\| | max rel (\\|f64\\|>=1% max) | rel L2 |",
            "|---|---|---|---|---|---|---|"]
    for n in (names if names is not None else entries):
        e = entries[n]
        rows.append(f"| `{n}` | {e['shape']} | {e['max_abs']:.3g} | {e['ref_max_abs']:.4g} | "
                    f"{e['max_abs_over_ref_max']:.3g} | {e['max_rel_where_ref>=1%max']:.3g} | {e['rel_l2']:.3g} |")
    return "\n".join(rows)


class Elementwise:
    """|a-b| <= atol + rtol*|b| elementwise."""

    def __init__(self, atol, rtol):
        self.atol, self.rtol = atol, rtol

    def text(self):
        if self.atol == 0:
            return f"`abs(a-b) <= {self.rtol:g}*abs(b)`"
        if self.rtol == 0:
            return f"`abs(a-b) <= {self.atol:g}`"
        return f"`abs(a-b) <= {self.atol:g} + {self.rtol:g}*abs(b)`"

    def ratio(self, a, ref):
        a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
        tol = self.atol + self.rtol * ref.abs()
        d = (a - ref).abs()
        # A zero tolerance (exact zero reference, atol 0) demands exact equality.
        ratio = torch.where(tol > 0, d / tol.clamp_min(1e-300), torch.where(d > 0, float("inf"), 0.0))
        return ratio.max().item() if a.numel() else 0.0


class MaxNorm:
    """max|a-b| <= rel*max|b| + abs per tensor (gradients: tiny entries carry no relative precision)."""

    def __init__(self, rel, abs_=0.0):
        self.rel, self.abs = rel, abs_

    def text(self):
        extra = f" + {self.abs:g}" if self.abs else ""
        return f"`max abs(a-b) <= {self.rel:g}*max abs(b){extra}` per tensor"

    def ratio(self, a, ref):
        a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
        tol = self.rel * ref.abs().max().item() + self.abs
        return (a - ref).abs().max().item() / tol


class Tolerances:
    """Rows of a case's tolerance table: quantity, tensors, the rule, measured difference and its share of
    the rule. `check()` fails generation when a measured difference uses more than MARGIN of its rule."""

    def __init__(self, case):
        self.case, self.rows = case, []

    def add(self, quantity, rule, pairs):
        """pairs: [(name, float32 tensor, float64 tensor)]; the worst one is reported."""
        worst = None
        for name, a, ref in pairs:
            r = rule.ratio(a, ref)
            s = stats(a, ref)
            if worst is None or r > worst[0]:
                worst = (r, name, s)
        self.rows.append({"quantity": quantity, "rule": rule.text(), "ratio": worst[0], "worst": worst[1],
                          "max_abs": worst[2]["max_abs"], "scale": worst[2]["ref_max_abs"],
                          "tensors": len(pairs)})

    def markdown(self):
        rows = ["| quantity | worst tensor | observed max abs (f32 vs f64) | max abs of f64 | recommended for C++ float32 vs golden | observed / tolerance |",
                "|---|---|---|---|---|---|"]
        for r in self.rows:
            rows.append(f"| {r['quantity']} | `{r['worst']}` | {r['max_abs']:.2g} | {r['scale']:.3g} | {r['rule']} | {r['ratio']:.3f} |")
        return "\n".join(rows)

    def check(self):
        bad = [r for r in self.rows if not r["ratio"] <= MARGIN]
        if bad:
            raise RuntimeError(f"{self.case}: measured float32 error uses more than {MARGIN} of the recommended "
                               "tolerance: " + "; ".join(f"{r['quantity']} ({r['worst']}: {r['ratio']:.3f} of {r['rule']})" for r in bad))

    def as_json(self):
        return self.rows
