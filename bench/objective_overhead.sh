#!/usr/bin/env bash
# Objective plugin call (4,096 pairs, each of the five objectives) as a fraction of a tiny-UNet
# Diffusion-DPO training step, side by side in one process. Usage: bench/objective_overhead.sh [BUILD_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
golden="${PREFDIFF_GOLDEN_DIR:-$build/golden/main}"  # the generated reference set (docs/golden.md)
[ -f "$golden/unet_sd15_tiny/config.json" ] || cmake --build "$build" --target golden >/dev/null
cmake --build "$build" --target prefdiff-bench-objective-overhead >/dev/null
"$build/bin/prefdiff-bench-objective-overhead" "$golden/unet_sd15_tiny/config.json" 4096 4 9
