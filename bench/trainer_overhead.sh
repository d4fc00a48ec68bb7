#!/usr/bin/env bash
# prefdiff's training step vs a bare LibTorch loop on the same tiny UNet, interleaved in one process.
# Usage: bench/trainer_overhead.sh [BUILD_DIR] [PAIRS] [REPEATS]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
golden="${PREFDIFF_GOLDEN_DIR:-$build/golden/main}"  # the generated reference set (docs/golden.md)
[ -f "$golden/unet_sd15_tiny/config.json" ] || cmake --build "$build" --target golden >/dev/null
cmake --build "$build" --target prefdiff-bench-trainer-overhead >/dev/null
"$build/bin/prefdiff-bench-trainer-overhead" "$golden/unet_sd15_tiny/config.json" "${2:-4}" "${3:-15}"
