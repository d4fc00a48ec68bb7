#!/usr/bin/env bash
# Data-loading benchmark (see bench/data_read.cpp): SD1.5-size pairs from page cache, shuffled, with prefetch,
# pinned to 2 cores. Usage: bench/data_read.sh BUILD_DIR [SHARD_DIR] [PAIRS] [BATCH] [sample]
set -euo pipefail
build=${1:?usage: bench/data_read.sh BUILD_DIR [SHARD_DIR] [PAIRS] [BATCH] [sample]}
cmake --build "$build" --target prefdiff-bench-data-read
exec taskset -c 0,1 "$build/bin/prefdiff-bench-data-read" "${2:-/tmp/prefdiff-bench-data}" "${3:-8000}" "${4:-32}" ${5:-}
