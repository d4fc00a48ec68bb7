#!/usr/bin/env python3
"""Scaling model of the data-parallel gradient all-reduce (docs/performance.md, "Gradient all-reduce overlapped
with backward"): bytes per optimizer step, the all-reduce time on 8 GPUs per node and 1-16 nodes, the backward
it can hide behind (from a measured results.json), and the part hidden by GradientBuckets' overlap.

  scaling_model.py [RESULTS_JSON] [--nvlink-gbs 450] [--ib-gbits 400] [--bucket-mib 25]   (a markdown table)

Assumptions (stated, not measured here): NVLink ~450 GB/s and InfiniBand 400 Gb/s (50 GB/s) per GPU, one NIC per
GPU; ring all-reduce moves 2(n-1)/n x bytes through each GPU's slowest link. Two bounds: a flat ring over all
8N GPUs at InfiniBand speed (pessimistic), and the hierarchical all-reduce NCCL approximates on such nodes
(reduce-scatter over NVLink, all-reduce of each GPU's 1/8 shard across nodes over InfiniBand, all-gather over
NVLink). The backward of one micro-step is taken from the measured forward+backward phase, split by FLOPs.
Only the last micro-step of an optimizer step communicates, so the overlap can hide at most its backward; the
last bucket's all-reduce always stays exposed.
"""
import argparse
import json
import os

PARAMS = {"sd15": 859_520_964, "sdxl": 2_567_463_684}  # tests/backbones/test_unet_model.cpp (real configs)
PAIRS_PER_STEP = 2048  # official: 2048 pairs per optimizer step


def backward_seconds(results, case):
    """Backward of one micro-step (policy backward, with the checkpoint recompute for SDXL) from the measured
    forward+backward phase, split by the FLOP count in the same file."""
    c = results["cases"][case]
    run = c["runs"]["prefdiff"]
    fl = c["flops"]
    fb = run["phase_s"]["forward_backward"]
    imgs = run["images_per_step"]
    fwd, fwdbwd = fl["fwd_flops_per_image"], fl["fwdbwd_flops_per_image"]
    ref = imgs * fwd
    policy_fwd = imgs * fwd
    policy_bwd = imgs * (fwdbwd - fwd)
    recompute = imgs * fwd if run.get("checkpointing") else 0.0
    total = ref + policy_fwd + policy_bwd + recompute
    return fb * (policy_bwd + recompute) / total, run["pairs"]


def allreduce_seconds(nbytes, nodes, nvlink, ib, gpus_per_node=8):
    n = nodes * gpus_per_node
    flat = 2 * (n - 1) / n * nbytes / (ib if nodes > 1 else nvlink)
    shard = nbytes / gpus_per_node
    intra = 2 * (gpus_per_node - 1) / gpus_per_node * nbytes / nvlink  # reduce-scatter + all-gather
    inter = 2 * (nodes - 1) / nodes * shard / ib if nodes > 1 else 0.0
    return flat, intra + inter


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default=os.path.join(here, "results", "h100-2026-11-27.json"))
    ap.add_argument("--nvlink-gbs", type=float, default=450.0, help="NVLink GB/s per GPU")
    ap.add_argument("--ib-gbits", type=float, default=400.0, help="InfiniBand Gb/s per GPU")
    ap.add_argument("--bucket-mib", type=float, default=25.0)
    a = ap.parse_args()
    with open(a.results) as f:
        results = json.load(f)
    nvlink, ib = a.nvlink_gbs * 1e9, a.ib_gbits / 8 * 1e9
    print("| size | grads | bytes/step | nodes (GPUs) | micro-steps | all-reduce flat / hier. | backward | hidden flat / hier. "
          "| exposed per micro-step, after backward (today) | exposed per micro-step, overlapped |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in ("sd15", "sdxl"):
        tb, pairs = backward_seconds(results, case)
        for dtype, size in (("fp32", 4), ("bf16", 2)):
            nbytes = PARAMS[case] * size
            last = a.bucket_mib * 2**20
            for nodes in (1, 2, 4, 8, 16):
                micro = max(1, PAIRS_PER_STEP // (pairs * 8 * nodes))
                flat, hier = allreduce_seconds(nbytes, nodes, nvlink, ib)
                cells = []
                for t in (flat, hier):
                    t_last = allreduce_seconds(last, nodes, nvlink, ib)[0 if t is flat else 1]
                    exposed = max(t - tb, 0.0) + t_last
                    exposed = min(exposed, t)
                    cells.append((1 - exposed / t, exposed / micro))
                print("| %s | %s | %.2f GB | %d (%d) | %d | %.0f / %.0f ms | %.0f ms | %.0f%% / %.0f%% | %.1f / %.1f ms "
                      "| %.1f / %.1f ms |" % (
                          "SD1.5" if case == "sd15" else "SDXL", dtype, nbytes / 1e9, nodes, 8 * nodes, micro, flat * 1e3,
                          hier * 1e3, tb * 1e3, 100 * cells[0][0], 100 * cells[1][0], flat / micro * 1e3,
                          hier / micro * 1e3, cells[0][1] * 1e3, cells[1][1] * 1e3))


if __name__ == "__main__":
    main()
