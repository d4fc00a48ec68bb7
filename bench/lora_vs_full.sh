#!/usr/bin/env bash
# A LoRA DPO step vs a full fine-tuning DPO step on the tiny SD1.5 UNet: step time (interleaved medians)
# and peak memory, with the ratio LoRA/full.
# Usage: bench/lora_vs_full.sh [BUILD_DIR] [PAIRS] [REPEATS] [RANK]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
golden="${PREFDIFF_GOLDEN_DIR:-$build/golden/main}"  # the generated reference set (docs/golden.md)
[ -f "$golden/unet_sd15_tiny/config.json" ] || cmake --build "$build" --target golden >/dev/null
cmake --build "$build" --target prefdiff-bench-lora-vs-full >/dev/null
"$build/bin/prefdiff-bench-lora-vs-full" "$golden/unet_sd15_tiny/config.json" "${2:-4}" "${3:-15}" "${4:-8}"
