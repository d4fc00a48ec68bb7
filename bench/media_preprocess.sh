#!/usr/bin/env bash
# Decode + training preprocessing of one image, prefdiff (media/image) vs Pillow side by side, one core.
# Usage: bench/media_preprocess.sh BUILD_DIR [IMAGE_DIR]   (IMAGE_DIR holds ImageReward's 1.webp;
# default: the repository's public fixtures). Uses the project's Python (PREFDIFF_PYTHON or python3).
set -euo pipefail
build=${1:?usage: bench/media_preprocess.sh BUILD_DIR [IMAGE_DIR]}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
images=${2:-$root/tests/fixtures/public/imagereward_images}
python=${PREFDIFF_PYTHON:-$(grep -s '^PREFDIFF_PYTHON:' "$build/CMakeCache.txt" | cut -d= -f2)}
cmake --build "$build" --target media_tool
exec taskset -c 0 "${python:-python3}" "$root/bench/media_preprocess.py" --tool "$build/bin/media_tool" --images "$images"
