#!/usr/bin/env python3
"""Compares the layout of two golden reference sets: folders, files, safetensors tensor names, dtypes and ranks
(shapes may differ: the sets differ in batch, latent size, step counts), metadata keys, and the keys of every
JSON file. Prints one line per difference and a summary; exits 1 when they differ.

    python tests/golden/compare_layout.py build/golden/main OTHER_SET [--cases clip_tiny lora_sd15_tiny ...]
        [--shapes]   also report shape differences
"""
import argparse
import json
import struct
import sys
from pathlib import Path


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    meta = h.pop("__metadata__", {})
    return {k: (v["dtype"], v["shape"]) for k, v in h.items()}, meta


def json_keys(obj, prefix=""):
    """Key paths of a JSON document (list elements merged under [])."""
    keys = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            keys.add(prefix + k)
            keys |= json_keys(v, prefix + k + ".")
    elif isinstance(obj, list):
        for v in obj:
            keys |= json_keys(v, prefix + "[].")
    return keys


def files(root, cases):
    out = {}
    for case in cases:
        for p in sorted((root / case).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = p
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--cases", nargs="*")
    ap.add_argument("--shapes", action="store_true")
    args = ap.parse_args()
    cases = args.cases or sorted({p.name for p in args.a.iterdir() if p.is_dir()} | {p.name for p in args.b.iterdir() if p.is_dir()})
    fa, fb = files(args.a, cases), files(args.b, cases)
    diffs = []
    for rel in sorted(set(fa) | set(fb)):
        if rel not in fa or rel not in fb:
            diffs.append(f"{rel}: only in {args.b if rel not in fa else args.a}")
            continue
        if rel.endswith(".safetensors"):
            (ta, ma), (tb, mb) = header(fa[rel]), header(fb[rel])
            for name in sorted(set(ta) | set(tb)):
                if name not in ta or name not in tb:
                    diffs.append(f"{rel}: tensor {name} only in {args.b if name not in ta else args.a}")
                elif ta[name][0] != tb[name][0] or len(ta[name][1]) != len(tb[name][1]):
                    diffs.append(f"{rel}: {name} {ta[name][0]}{ta[name][1]} vs {tb[name][0]}{tb[name][1]}")
                elif args.shapes and ta[name][1] != tb[name][1]:
                    diffs.append(f"{rel}: {name} shape {ta[name][1]} vs {tb[name][1]}")
            for key in sorted(set(ma) ^ set(mb)):
                diffs.append(f"{rel}: metadata key {key!r} only in {args.a if key in ma else args.b}")
        elif rel.endswith(".json"):
            ka, kb = json_keys(json.loads(fa[rel].read_text())), json_keys(json.loads(fb[rel].read_text()))
            if rel.endswith("f32_vs_f64.json"):  # measurements keyed by tensor name: compare the sections only
                ka, kb = {k for k in ka if "." not in k}, {k for k in kb if "." not in k}
            for key in sorted(ka ^ kb):
                diffs.append(f"{rel}: JSON key {key} only in {args.a if key in ka else args.b}")
    for d in diffs:
        print(d)
    print(f"{len(diffs)} difference(s) in {len(set(fa) | set(fb))} files of {len(cases)} case folders")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
