#!/usr/bin/env python3
"""prefdiff's reference generator: writes the golden sets the C++ tests compare against.

    python tests/golden/generate.py --set main   --out build/golden/main
    python tests/golden/generate.py --set second --out build/golden/second

Run with the project's Python environment (requirements.lock: torch, diffusers, transformers, peft, open_clip).
Each set is regenerated only when the generator, requirements.lock or the public inputs in
tests/fixtures/public change (a hash of them is kept in <out>/.stamp); a set is written into a temporary
folder and moved into place when complete, so a test never sees half a set. Layout and conventions:
docs/golden.md; every case folder has a README.md with its recipe, tensors, measured float32-vs-float64
differences and recommended tolerances.
"""
import argparse
import fcntl
import hashlib
import importlib
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
# Offline and quiet: every model is built from a config here, nothing may be downloaded.
for _k, _v in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
               ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_k, _v)


def tree_hash():
    """Hash of everything a set depends on: the generator's sources, the lock file, the public inputs."""
    files = sorted(p for p in HERE.rglob("*.py") if "__pycache__" not in p.parts)
    files += [REPO / "requirements.lock"]
    files += sorted(p for p in (REPO / "tests" / "fixtures" / "public").rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(REPO)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


# (case, module in refgen.cases, function, extra args). Order matters: later cases reuse earlier ones
# (dpo_step and lora the SD1.5 UNet, the pipelines the text encoders, VAE and UNets).
CASES = [
    ("unet_sd15_tiny", "unet", "generate", ("unet_sd15_tiny",)),
    ("unet_sdxl_tiny", "unet", "generate", ("unet_sdxl_tiny",)),
    ("schedulers", "schedulers", "generate", ()),
    ("vae_tiny", "vae", "generate", ()),
    ("dpo_step", "dpo_step", "generate", ()),
    ("clip_tokenizer", "clip_tokenizer", "generate", ()),
    ("clip_text_tiny", "clip_text", "generate_text", ()),
    ("clip_text_proj_tiny", "clip_text", "generate_proj", ()),
    ("clip_tiny", "clip_model", "generate", ()),
    ("pipeline_sd15_tiny", "pipeline_sd15", "generate", ()),
    ("lora_sd15_tiny", "lora", "generate", ()),
    ("pipeline_sdxl_tiny", "pipeline_sdxl", "generate", ()),
    ("open_clip_tiny", "open_clip_tiny", "generate", ()),
    ("aesthetic_mlp_tiny", "aesthetic", "generate", ()),
]


def generate(set_name, out, threads, only=None):
    import torch
    from refgen import overview
    from refgen.context import Context
    from refgen.sets import SETS

    import diffusers
    import transformers
    torch.set_num_threads(threads)
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    ctx = Context(out, SETS[set_name], threads, tree_hash())
    timings = []
    for name, module, function, extra in CASES:
        if only and name not in only:
            continue
        t0 = time.time()
        getattr(importlib.import_module(f"refgen.cases.{module}"), function)(ctx, *extra)
        timings.append((name, time.time() - t0))
        print(f"[golden] {set_name}/{name}: {timings[-1][1]:.1f} s", flush=True)
    if not only:
        overview.write(ctx, timings)
    return timings


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", required=True, choices=["main", "second"])
    ap.add_argument("--out", required=True, help="folder of the set (created; replaced when out of date)")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("PREFDIFF_GOLDEN_THREADS", "1")),
                    help="torch threads (default 1, or $PREFDIFF_GOLDEN_THREADS: ctest generates both sets at once)")
    ap.add_argument("--force", action="store_true", help="regenerate even when the stamp is current")
    ap.add_argument("--only", nargs="*", help="(development) generate only these cases into --out, no stamp")
    ap.add_argument("--print-hash", action="store_true", help="print the hash of the inputs and exit")
    args = ap.parse_args()

    key = tree_hash()
    if args.print_hash:
        print(key)
        return 0
    out = Path(args.out).resolve()
    if args.only:
        generate(args.set, out, args.threads, set(args.only))
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second ctest or build on the same tree waits, then finds it current
        stamp = out / ".stamp"
        if not args.force and stamp.exists() and stamp.read_text().strip() == key:
            print(f"[golden] {out}: up to date ({key})")
            return 0
        partial = out.parent / f"{out.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        t0 = time.time()
        try:
            generate(args.set, partial, args.threads)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        (partial / ".stamp").write_text(key + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(partial, out)
        print(f"[golden] {out}: set '{args.set}' generated in {time.time() - t0:.0f} s ({key})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
