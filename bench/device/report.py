#!/usr/bin/env python3
"""Combines bench/device/run.sh's per-phase JSON files into results.json and prints the summary table.

  report.py DIR OUT.json

Model FLOPs of one DPO step with B pairs (2B images): policy forward+backward (counted, ~3x forward) plus the
reference forward, each on 2B images. With gradient checkpointing the recomputed forward is extra hardware
work, reported as overhead and not counted as model FLOPs. MFU = model FLOPs / step time / measured bf16
matmul rate of the same card. The VAE encode of baseline (a) is work prefdiff does not do (latents are
precomputed), so it is not counted either: all MFUs are "UNet model FLOPs per second".
"""
import glob
import json
import os
import sys

TARGETS = {"mfu_sdxl": 0.40, "mfu_sd15": 0.35, "vs_official": 1.5, "vs_unet": 1.0}
IMPLS = ("prefdiff", "prefdiff_overlap", "prefdiff_batched", "prefdiff_loop", "prefdiff_budget", "prefdiff_cl",
         "official", "unet")
GIB = 2.0 ** 30


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    d, out = sys.argv[1], sys.argv[2]
    res = {"meta": load(os.path.join(d, "meta.json")) or {}, "golden": {}, "cases": {}, "errors": []}
    for p in sorted(glob.glob(os.path.join(d, "golden_*.json")) + glob.glob(os.path.join(d, "device_*.json"))):
        g = load(p)
        if g is not None:
            name = os.path.basename(p)[:-5]
            name = name[7:] if name.startswith("golden_") else name
            skipped = sum(1 for suite in g.get("testsuites", []) for t in suite.get("testsuite", [])
                          if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN")
            res["golden"][name] = {"tests": g.get("tests"), "failures": g.get("failures"), "skipped": skipped,
                                   "disabled": g.get("disabled"), "errors": g.get("errors")}
    mm = load(os.path.join(d, "matmul.json"))
    res["matmul"] = mm
    peak = mm["tflops"] * 1e12 if mm else None
    for case in ("sd15", "sdxl", "tiny_sd15", "tiny_sdxl"):
        fl = load(os.path.join(d, "flops_%s.json" % case))
        rows = {}
        for impl in IMPLS:
            r = load(os.path.join(d, "%s_%s.json" % (impl, case)))
            if r is None:
                continue
            imgs = r["images_per_step"]
            if fl:
                model = imgs * (fl["fwdbwd_flops_per_image"] + fl["fwd_flops_per_image"])
                r["model_flops_per_step"] = model
                ck = r.get("checkpointing_choice") or {}
                if "recompute_flops" in ck:  # prefdiff: the estimate's count of what its checkpoints recompute
                    r["recompute_flops_per_step"] = ck["recompute_flops"]
                else:
                    r["recompute_flops_per_step"] = imgs * fl["fwd_flops_per_image"] if r.get("checkpointing") else 0
                r["model_tflops_per_s"] = model / r["median_step_s"] / 1e12
                if peak:
                    r["mfu"] = model / r["median_step_s"] / peak
            r["impl_variant"] = impl
            rows[impl] = r
        if not rows:
            continue
        c = {"flops": {k: v for k, v in (fl or {}).items() if k != "fwd_by_op"}, "runs": rows}
        p = rows.get("prefdiff")
        for base in ("official", "unet"):
            if p and base in rows:
                c["prefdiff_over_" + base] = p["pairs_per_s"] / rows[base]["pairs_per_s"]
        if p and "prefdiff_cl" in rows:  # the channels-last variant, measured against prefdiff's default
            c["channels_last_over_default"] = rows["prefdiff_cl"]["pairs_per_s"] / p["pairs_per_s"]
        if p and "prefdiff_loop" in rows:  # what the multi-tensor optimizer update buys
            c["default_over_per_tensor_loop"] = p["pairs_per_s"] / rows["prefdiff_loop"]["pairs_per_s"]
        # Before/after of each change, on one card: fused over batched Adafactor, batched over the per-tensor loop,
        # selective (budget) over full checkpointing, the overlap hooks over none (one rank: their cost).
        for key, num, den in (("fused_over_batched_adafactor", "prefdiff", "prefdiff_batched"),
                              ("batched_over_loop_adafactor", "prefdiff_batched", "prefdiff_loop"),
                              ("budget_over_full_checkpointing", "prefdiff_budget", "prefdiff"),
                              ("overlap_hooks_over_none", "prefdiff_overlap", "prefdiff")):
            if num in rows and den in rows:
                c[key] = rows[num]["pairs_per_s"] / rows[den]["pairs_per_s"]
        best = max((rows[i] for i in IMPLS if i.startswith("prefdiff") and i in rows and i != "prefdiff_loop"),
                   key=lambda r: r["pairs_per_s"], default=None)
        if best is not None:
            c["best_prefdiff"] = {"impl": best["impl_variant"] if "impl_variant" in best else None,
                                  "pairs_per_s": best["pairs_per_s"], "mfu": best.get("mfu")}
            for base in ("official", "unet"):
                if base in rows:
                    c["best_prefdiff_over_" + base] = best["pairs_per_s"] / rows[base]["pairs_per_s"]
        if p and "unet" in rows and p.get("peak_allocated_bytes") and rows["unet"].get("peak_allocated_bytes"):
            c["peak_memory_prefdiff_minus_unet_gib"] = (p["peak_allocated_bytes"] - rows["unet"]["peak_allocated_bytes"]) / GIB
        # SDPA: no attention shape may take the math path on the GPU.
        sd = (p or {}).get("sdpa")
        if sd:
            c["sdpa_backends"] = sorted({x["backend"] for x in sd})
            c["sdpa_math_calls"] = sum(x["calls"] for x in sd if x["backend"] in ("math", "error"))
        res["cases"][case] = c
    for p in sorted(glob.glob(os.path.join(d, "*.err"))):
        with open(p) as f:
            res["errors"].append({"phase": os.path.basename(p)[:-4], "message": f.read()[-2000:]})
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

    print("\n==== summary (%s; matmul ceiling %s) ====" % (
        res["meta"].get("device_name", "?"), "%.4g TFLOP/s %s" % (mm["tflops"], mm["dtype"]) if mm else "not measured"))
    for k, g in res["golden"].items():
        print("tests  %-28s tests %s failures %s skipped %s" % (k, g["tests"], g["failures"], g.get("skipped", 0)))
    hdr = "%-10s %-17s %5s %9s %10s %9s %7s %10s" % ("case", "impl", "pairs", "step ms", "pairs/s", "peak GiB",
                                                     "MFU", "prefdiff/x")
    print(hdr)
    for case, c in res["cases"].items():
        for impl, r in c["runs"].items():
            mem = r.get("peak_allocated_bytes")
            ratio = c.get("prefdiff_over_" + impl)
            print("%-10s %-17s %5d %9.1f %10.2f %9s %7s %10s" % (
                case, impl, r["pairs"], r["median_step_s"] * 1e3, r["pairs_per_s"],
                "%.1f" % (mem / 2 ** 30) if mem else "-", "%.1f%%" % (100 * r["mfu"]) if "mfu" in r else "-",
                "%.2f" % ratio if ratio else "-"))
    for case, c in res["cases"].items():
        for impl in IMPLS:
            r = c["runs"].get(impl, {})
            ph = r.get("phase_s")
            if ph:
                print("%s %s phases (synced): %s" % (case, impl, ", ".join(
                    "%s %.1f ms" % (k, 1e3 * v) for k, v in ph.items())))
            mem = r.get("memory_phases_bytes")
            if mem:
                print("%s %s memory (GiB): %s" % (case, impl, ", ".join(
                    "%s %.2f" % (k, v / GIB) for k, v in sorted(mem.items()))))
            ck = r.get("checkpointing_choice")
            if ck and ck.get("mode") not in (None, "none"):
                print("%s %s checkpointing: %s, %s of %s units, estimated activation peak %.2f GiB, recompute %.1f TFLOP%s"
                      % (case, impl, ck["mode"], ck.get("checkpointed"), ck.get("units"),
                         ck.get("estimated_peak_bytes", 0) / GIB, ck.get("recompute_flops", 0) / 1e12,
                         "" if ck.get("fits", True) else " (DOES NOT FIT the budget)"))
            gb = r.get("gradient_buckets")
            if gb:
                print("%s %s gradient buckets: %s, %s launched during backward, %s by finish (%s)" % (
                    case, impl, gb["buckets"], gb["launched_during_backward"], gb["launched_by_finish"], gb["backend"]))
            top = (r.get("memory_at_peak") or {}).get("top")
            if top:
                print("%s %s live at the peak (allocator history), beyond %.2f GiB allocated before the step:" % (
                    case, impl, r["memory_at_peak"]["allocated_before_recording"] / GIB))
                for t in top[:10]:
                    print("    %8.3f GiB  %s" % (t["bytes"] / GIB, t["where"]))
    for case in ("sd15", "sdxl", "tiny_sd15", "tiny_sdxl"):
        c = res["cases"].get(case)
        if not c:
            continue
        p = c["runs"].get("prefdiff", {})
        checks = []
        target = TARGETS["mfu_" + case.replace("tiny_", "")]
        best = c.get("best_prefdiff")
        if best and best.get("mfu"):
            checks.append("best MFU %.1f%% (%s; target >= %d%%): %s" % (100 * best["mfu"], best["impl"], 100 * target,
                                                                     "met" if best["mfu"] >= target else "NOT met"))
        for base in ("official", "unet"):
            if "best_prefdiff_over_" + base in c:
                checks.append("best vs (%s) %.2fx" % ("a" if base == "official" else "b", c["best_prefdiff_over_" + base]))
        for key in ("fused_over_batched_adafactor", "batched_over_loop_adafactor", "budget_over_full_checkpointing",
                    "overlap_hooks_over_none"):
            if key in c:
                checks.append("%s %.3fx" % (key, c[key]))
        if "peak_memory_prefdiff_minus_unet_gib" in c:
            v = c["peak_memory_prefdiff_minus_unet_gib"]
            checks.append("peak memory prefdiff - (b) %+.2f GiB (target <= 0: %s)" % (v, "met" if v <= 0 else "NOT met"))
        if "sdpa_math_calls" in c:
            checks.append("SDPA backends %s, math calls %d%s" % ("/".join(c["sdpa_backends"]), c["sdpa_math_calls"],
                                                                 "" if c["sdpa_math_calls"] == 0 else " (ERROR)"))
        if "prefdiff_over_official" in c:
            v = c["prefdiff_over_official"]
            checks.append("vs (a) %.2fx (target >= 1.5x): %s" % (v, "met" if v >= 1.5 else "NOT met"))
        if "prefdiff_over_unet" in c:
            v = c["prefdiff_over_unet"]
            checks.append("vs (b) %.2fx (target >= 1.0x): %s" % (v, "met" if v >= 1.0 else "NOT met"))
        if "default_over_per_tensor_loop" in c:
            checks.append("multi-tensor optimizer %.2fx the per-tensor loop" % c["default_over_per_tensor_loop"])
        if "channels_last_over_default" in c:
            checks.append("channels-last %.2fx the default" % c["channels_last_over_default"])
        print("%s: %s" % (case, "; ".join(checks) or "no comparison"))
    for e in res["errors"]:
        print("ERROR in %s: %s" % (e["phase"], e["message"].strip().splitlines()[-1] if e["message"].strip() else "?"))


if __name__ == "__main__":
    main()
