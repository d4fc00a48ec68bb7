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

TARGETS = {"mfu_sdxl": 0.40, "vs_official": 1.5, "vs_unet": 1.0}


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    d, out = sys.argv[1], sys.argv[2]
    res = {"meta": load(os.path.join(d, "meta.json")) or {}, "golden": {}, "cases": {}, "errors": []}
    for p in sorted(glob.glob(os.path.join(d, "golden_*.json"))):
        g = load(p)
        if g is not None:
            res["golden"][os.path.basename(p)[7:-5]] = {"tests": g.get("tests"), "failures": g.get("failures"),
                                                        "disabled": g.get("disabled"), "errors": g.get("errors")}
    mm = load(os.path.join(d, "matmul.json"))
    res["matmul"] = mm
    peak = mm["tflops"] * 1e12 if mm else None
    for case in ("sd15", "sdxl", "tiny_sd15", "tiny_sdxl"):
        fl = load(os.path.join(d, "flops_%s.json" % case))
        rows = {}
        for impl in ("prefdiff", "prefdiff_loop", "prefdiff_cl", "official", "unet"):
            r = load(os.path.join(d, "%s_%s.json" % (impl, case)))
            if r is None:
                continue
            imgs = r["images_per_step"]
            if fl:
                model = imgs * (fl["fwdbwd_flops_per_image"] + fl["fwd_flops_per_image"])
                r["model_flops_per_step"] = model
                r["recompute_flops_per_step"] = imgs * fl["fwd_flops_per_image"] if r.get("checkpointing") else 0
                r["model_tflops_per_s"] = model / r["median_step_s"] / 1e12
                if peak:
                    r["mfu"] = model / r["median_step_s"] / peak
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
        res["cases"][case] = c
    for p in sorted(glob.glob(os.path.join(d, "*.err"))):
        with open(p) as f:
            res["errors"].append({"phase": os.path.basename(p)[:-4], "message": f.read()[-2000:]})
    with open(out, "w") as f:
        json.dump(res, f, indent=1)

    print("\n==== summary (%s; matmul ceiling %s) ====" % (
        res["meta"].get("device_name", "?"), "%.4g TFLOP/s %s" % (mm["tflops"], mm["dtype"]) if mm else "not measured"))
    for k, g in res["golden"].items():
        print("golden %-22s tests %s failures %s" % (k, g["tests"], g["failures"]))
    hdr = "%-10s %-13s %5s %9s %10s %9s %7s %10s" % ("case", "impl", "pairs", "step ms", "pairs/s", "peak GiB",
                                                     "MFU", "prefdiff/x")
    print(hdr)
    for case, c in res["cases"].items():
        for impl, r in c["runs"].items():
            mem = r.get("peak_allocated_bytes")
            ratio = c.get("prefdiff_over_" + impl)
            print("%-10s %-13s %5d %9.1f %10.2f %9s %7s %10s" % (
                case, impl, r["pairs"], r["median_step_s"] * 1e3, r["pairs_per_s"],
                "%.1f" % (mem / 2 ** 30) if mem else "-", "%.1f%%" % (100 * r["mfu"]) if "mfu" in r else "-",
                "%.2f" % ratio if ratio else "-"))
    for case, c in res["cases"].items():
        for impl in ("prefdiff", "prefdiff_loop", "prefdiff_cl"):
            ph = c["runs"].get(impl, {}).get("phase_s")
            if ph:
                print("%s %s phases (synced): %s" % (case, impl, ", ".join(
                    "%s %.1f ms" % (k, 1e3 * v) for k, v in ph.items())))
    for case in ("sd15", "sdxl"):
        c = res["cases"].get(case)
        if not c:
            continue
        p = c["runs"].get("prefdiff", {})
        checks = []
        if case == "sdxl" and "mfu" in p:
            checks.append("MFU %.1f%% (target >= 40%%): %s" % (100 * p["mfu"], "met" if p["mfu"] >= 0.40 else "NOT met"))
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
