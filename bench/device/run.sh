#!/usr/bin/env bash
# The GPU path (issues 8 and 17) in one call: build prefdiff against the machine's PyTorch LibTorch, run the
# golden tests on the GPU in float32 (README tolerances, TF32 off) and under bf16 autocast (docs/performance.md),
# the device-only tests (fused Adafactor against the float64 update; no attention call on the math SDPA path),
# time one Diffusion-DPO step (SD1.5-size UNet at 64x64 latents, SDXL-size at 128x128) in its variants (SDXL:
# fused / batched / per-tensor Adafactor, every unit / a budget's units checkpointed; both: gradient all-reduce
# hooks on, one rank) and the two diffusers baselines (the UNet-alone one with the allocator's history at its
# peak), and write results.json, run.log and details.tar.gz into $OUT.
#
#   bench/device/run.sh                  on the GPU machine (after bench/device/prepare.sh here; carry
#                                        bench/device/carry); bounded by --budget seconds (default 560)
#   bench/device/run.sh --cpu --tiny     the whole pipeline on the CPU with the tiny golden configs
#
# Options: --cpu, --tiny, --budget S, --cases sd15,sdxl, --skip-golden, --skip-bench, --build-only, --jobs N.
# PREFDIFF_BENCH_SDXL_BUDGET_GB (default 40): the activation budget of the selective-checkpointing SDXL row.
# Every phase has its own timeout inside the budget; a failed or timed-out phase is reported (ERROR lines,
# *.err in details.tar.gz) and makes the script exit non-zero, but later phases still run so that one call
# returns as many numbers as it can. A failed build stops the script.
set -Eeuo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cpu=0 tiny=0 budget="" cases="" skip_golden=0 skip_bench=0 build_only=0 jobs="$(nproc)"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1 ;;
    --tiny) tiny=1 ;;
    --budget) budget="$2"; shift ;;
    --cases) cases="$2"; shift ;;
    --skip-golden) skip_golden=1 ;;
    --skip-bench) skip_bench=1 ;;
    --build-only) build_only=1 ;;
    --jobs) jobs="$2"; shift ;;
    -h|--help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
start=$(date +%s)
# Phase timeouts are sized for the GPU machine (16 cores); the CPU mode runs on shared 2-core machines.
if [ "$cpu" = 1 ]; then budget="${budget:-3000}"; tscale=4; else budget="${budget:-560}"; tscale=1; fi
out="${OUT:-$root/build-device-out}"
mkdir -p "$out"
parts="$(mktemp -d /tmp/prefdiff-device.XXXXXX)"
exec > >(tee -a "$out/run.log") 2>&1
export PYTHONUNBUFFERED=1
failed=()
py="${PYTHON:-python3}"

say() { printf '[run %4ds] %s\n' "$(( $(date +%s) - start ))" "$*"; }
left() { echo $(( budget - ($(date +%s) - start) )); }
finish() {
  local rc=$1
  say "report"
  "$py" "$root/bench/device/report.py" "$parts" "$parts/results.json" || rc=1
  cp "$parts/results.json" "$out/results.json" 2>/dev/null || true
  tar -C "$parts" -czf "$out/details.tar.gz" . 2>/dev/null && rm -rf "$parts" || true
  if [ ${#failed[@]} -gt 0 ]; then say "FAILED phases: ${failed[*]}"; rc=1; fi
  say "done (exit $rc); results in $out"
  exit "$rc"
}
trap 'say "unexpected error at line $LINENO"; failed+=("script"); finish 1' ERR

# phase NAME TIMEOUT CMD...: runs CMD with a timeout inside the budget; log in $parts/NAME.log.
phase() {
  local name="$1" t=$(( $2 * tscale )); shift 2
  local avail=$(( $(left) - 15 ))
  [ "$avail" -lt "$t" ] && t="$avail"
  if [ "$t" -lt 5 ]; then
    say "SKIPPED $name: time budget spent"; echo "skipped: time budget spent" >"$parts/$name.err"; failed+=("$name"); return 1
  fi
  say "== $name (timeout ${t}s, $(left)s of budget left)"
  set +e
  timeout -k 10 "$t" "$@" 2>&1 | tee "$parts/$name.log"
  local rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 124 ] && say "ERROR $name: timed out after ${t}s" || say "ERROR $name: exit $rc"
    { echo "exit $rc"; tail -n 40 "$parts/$name.log"; } >"$parts/$name.err"
    failed+=("$name")
    return 1
  fi
  say "ok $name ($(left)s left)"
}

# ---- Environment: Python with torch; on the GPU machine the carried prefix and wheels.
if [ "$cpu" = 1 ]; then
  venv="$(ls -dt "${PREFDIFF_CACHE:-$HOME/.cache/prefdiff}"/venv-*/ 2>/dev/null | head -1 || true)"
  py="${PYTHON:-${venv:+${venv}bin/python}}"
  py="${py:-python3}"
  build="${PREFDIFF_DEVICE_BUILD_DIR:-$root/build-device}"
  golden="${PREFDIFF_GOLDEN_DIR:-$root/build/golden/main}"  # generated: cmake --build build --target golden
  device=cpu
else
  py="${PYTHON:-python3}"
  build="${PREFDIFF_DEVICE_BUILD_DIR:-$root/build-device-gpu}"  # in the tree: kept while the machine stays warm
  carry="$root/bench/device/carry"
  [ -f "$carry/prefix.tar.xz" ] || { say "ERROR: $carry/prefix.tar.xz missing: run bench/device/prepare.sh and carry bench/device/carry"; exit 1; }
  golden="$carry/golden"
  device=cuda
  prefix=/tmp/prefdiff-prefix
  if [ ! -f "$prefix/.complete" ]; then
    rm -rf "$prefix" && mkdir -p "$prefix" && tar -C "$prefix" -xJf "$carry/prefix.tar.xz" && touch "$prefix/.complete"
  fi
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/prefdiff-site \
    "$carry"/wheels/*.whl
  export PYTHONPATH="/tmp/prefdiff-site${PYTHONPATH:+:$PYTHONPATH}"
  # Runtime libraries of the carried packages that this system lacks (only those: the system's own win).
  rt=/tmp/prefdiff-rt; rm -rf "$rt"; mkdir -p "$rt"
  have="$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)"
  for f in "$prefix"/usr/lib/x86_64-linux-gnu/lib*.so.*; do
    n="$(basename "$f")"
    grep -q "^[[:space:]]$n " <<<"$have" || ln -sf "$f" "$rt/$n"
  done
  say "carried runtime libraries used (absent from the system): $(ls "$rt" | grep -cE '\.so\.[0-9]+$' || true)"
  export LD_LIBRARY_PATH="$rt${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
say "python: $py; build: $build; golden: $golden; device: $device; budget ${budget}s"
ROOT="$root" "$py" - "$parts/meta.json" <<'EOF'
import json, os, platform, subprocess, sys, torch
m = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
     "host": platform.node(), "cpus": os.cpu_count()}
try:
    import diffusers; m["diffusers"] = diffusers.__version__
except Exception as e:  # noqa: BLE001
    m["diffusers"] = "import failed: %s" % e
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    m.update(device_name=p.name, sms=p.multi_processor_count, memory_gib=p.total_memory / 2**30)
else:
    m["device_name"] = "cpu"
try:
    m["git"] = subprocess.run(["git", "-C", os.environ.get("ROOT", "."), "describe", "--always", "--dirty"],
                              capture_output=True, text=True).stdout.strip()
except Exception:  # noqa: BLE001
    pass
json.dump(m, open(sys.argv[1], "w"), indent=1)
print(json.dumps(m))
EOF
command -v nvidia-smi >/dev/null && [ "$cpu" = 0 ] && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || true
say "compilers: $(c++ --version | head -1); $(cmake --version | head -1); ninja $(ninja --version 2>/dev/null || echo missing)"

# ---- Build (only what this script runs).
torch_prefix="$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cfg=(-S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$(command -v "$py" || echo "$py")")
  if [ "$cpu" = 1 ]; then
    cfg+=(-DCMAKE_PREFIX_PATH="$torch_prefix")
  else
    lib="$prefix/usr/lib/x86_64-linux-gnu"
    cfg+=(-DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr" -DHDF5_ROOT="$lib/hdf5/serial"
          -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$lib" -DCMAKE_SHARED_LINKER_FLAGS="-Wl,-rpath-link,$lib"
          -DCMAKE_MODULE_LINKER_FLAGS="-Wl,-rpath-link,$lib")
    [ -d /usr/local/cuda ] && cfg+=(-DCUDAToolkit_ROOT=/usr/local/cuda -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
    export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
    cfg+=(-DPREFDIFF_CUDA_ARCHITECTURES="${PREFDIFF_CUDA_ARCHITECTURES:-90}")  # the fused Adafactor kernels: sm_90
  fi
  command -v ccache >/dev/null && cfg+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  phase configure 120 cmake "${cfg[@]}" || finish 1
fi
# -k 0: one call reports every translation unit that fails against this machine's LibTorch, not just the first.
phase build 420 cmake --build "$build" -j "$jobs" --target test_unet_golden test_dpo_step_golden dpo_step_bench test_optim \
  test_unet_sdpa -- -k 0 || finish 1
[ "$build_only" = 1 ] && finish 0

# ---- Golden tests on the device: float32 (README tolerances, TF32 off) and bfloat16 autocast.
if [ "$skip_golden" = 0 ]; then
  for dt in float32 bfloat16; do
    for t in backbones/test_unet_golden train/test_dpo_step_golden; do
      n="$(basename "$t")"; n="${n#test_}"
      phase "golden_${n}_$dt" 120 env PREFDIFF_GOLDEN_DIR="$golden" PREFDIFF_TEST_DEVICE="$device" PREFDIFF_TEST_DTYPE="$dt" \
        "$build/tests/$t" --gtest_output="json:$parts/golden_${n}_$dt.json" || true
    done
  done
fi

# ---- Device-only tests: the fused Adafactor kernels against the float64 update (skipped without a GPU), and
# which SDPA kernel every SD1.5 / SDXL attention shape takes in bf16 (none may be math).
if [ "$skip_golden" = 0 ]; then
  phase device_adafactor_fused 60 "$build/tests/optim/test_optim" --gtest_filter='AdafactorFused.*' \
    --gtest_output="json:$parts/device_adafactor_fused.json" || true
  phase device_sdpa 60 env PREFDIFF_TEST_DEVICE="$device" "$build/tests/backbones/test_unet_sdpa" \
    --gtest_output="json:$parts/device_sdpa.json" || true
fi

# ---- Benchmarks.
bench_py=("$py" "$root/bench/device/torch_side.py")
# GPU: reference (and the official script's VAE) in bf16. CPU: float32 and one thread on both sides (CPU bf16
# convolutions are slow without AMX, and oversubscribed OpenMP threads stall for seconds on a busy machine).
wdt=bfloat16
if [ "$cpu" = 1 ]; then wdt=float32; export OMP_NUM_THREADS=1; fi
if [ "$skip_bench" = 0 ]; then
  sdxl_budget="${PREFDIFF_BENCH_SDXL_BUDGET_GB:-40}"
  if [ "$tiny" = 1 ]; then
    # name config latent pairs optimizer checkpointing vae ctx warmup steps
    specs=("tiny_sd15 $golden/unet_sd15_tiny/config.json 16 2 adamw 0 $golden/vae_tiny/config.json 7 1 3"
           "tiny_sdxl $golden/unet_sdxl_tiny/config.json 16 2 adafactor 1 $golden/vae_tiny/config.json 7 1 3")
    mm=(--n 1024 --dtype float32 --warmup 2 --reps 5)
    sdxl_budget=0.02  # 20 MiB: 17 of the tiny SDXL's 50 units checkpointed (all: 6.5 MB, none: 35 MB)
  else
    specs=("sd15 $root/tests/fixtures/configs/sd15_unet_config.json 64 8 adamw 0 $root/bench/device/configs/sd15_vae_config.json 77 3 8"
           "sdxl $root/tests/fixtures/configs/sdxl_unet_config.json 128 4 adafactor 1 $root/bench/device/configs/sdxl_vae_config.json 77 2 5")
    mm=(--n 8192 --dtype bfloat16)
  fi
  phase matmul 60 "${bench_py[@]}" matmul --device "$device" "${mm[@]}" --out "$parts/matmul.json" || true
  # Per case: FLOPs (committed count when its config matches, else counted now), prefdiff (fused Adafactor /
  # AdamW, every unit checkpointed for SDXL), its variants, then (a) and (b). Variants: _overlap (gradient
  # all-reduce hooks, one rank); SDXL only: _batched (the batched ATen Adafactor), _loop (per-tensor Adafactor),
  # _budget (selective checkpointing at $sdxl_budget GiB). PREFDIFF_BENCH_CHANNELS_LAST=1 adds the channels-last
  # variant (measured 0.96-0.97x on an H100). Ordered so that the rows the issue's targets need come first.
  variants=(prefdiff official unet prefdiff_overlap prefdiff_batched prefdiff_budget prefdiff_loop)
  [ "${PREFDIFF_BENCH_CHANNELS_LAST:-0}" = 1 ] && variants+=(prefdiff_cl)
  for impl in flops "${variants[@]}"; do
    for s in "${specs[@]}"; do
      read -r name config latent pairs optim ckpt vae ctx warm steps <<<"$s"
      [ -n "$cases" ] && [[ ",$cases," != *",${name#tiny_},"* ]] && continue
      case "$impl" in prefdiff_batched|prefdiff_loop|prefdiff_budget) [ "$optim" = adafactor ] || continue ;; esac
      case "$impl" in
        flops)
          pre="$root/bench/device/flops/$name.json"
          if [ -f "$pre" ] && "$py" -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2])); sys.exit(0 if a["config_json"]==b and a["latent"]==int(sys.argv[3]) and a["ctx_len"]==int(sys.argv[4]) else 1)' "$pre" "$config" "$latent" "$ctx" 2>/dev/null; then
            cp "$pre" "$parts/flops_$name.json"; say "flops $name: committed count ($pre)"
          else
            phase "flops_$name" 180 "${bench_py[@]}" flops --config "$config" --latent "$latent" --ctx-len "$ctx" --out "$parts/flops_$name.json" || true
          fi ;;
        prefdiff*)
          t=120; [ "$tiny" = 0 ] && [ "$name" = sd15 ] && t=90
          extra=(--channels-last 0 --overlap 0 --adafactor fused)
          case "$impl" in
            prefdiff_cl) extra=(--channels-last 1) ;;
            prefdiff_overlap) extra=(--overlap 1) ;;
            prefdiff_batched) extra=(--adafactor batched) ;;
            prefdiff_loop) extra=(--adafactor loop --multi-tensor off) ;;
            prefdiff_budget) extra=(--activation-budget-gb "$sdxl_budget") ;;
          esac
          phase "${impl}_$name" "$t" "$build/bin/dpo_step_bench" --config "$config" --latent "$latent" --pairs "$pairs" \
            --optimizer "$optim" --checkpointing "$ckpt" --device "$device" "${extra[@]}" \
            --ctx-len "$ctx" --warmup "$warm" --ref-dtype "$wdt" --steps "$steps" --out "$parts/${impl}_$name.json" || true ;;
        official|unet)
          t=150; [ "$tiny" = 0 ] && [ "$name" = sd15 ] && t=100
          hist=(); [ "$impl" = unet ] && [ "$optim" = adafactor ] && hist=(--memory-history)  # where (b)'s memory goes
          phase "${impl}_$name" "$t" "${bench_py[@]}" baseline --mode "$impl" --config "$config" --vae-config "$vae" --weight-dtype "$wdt" \
            --latent "$latent" --pairs "$pairs" --optimizer "$optim" --checkpointing "$ckpt" --device "$device" \
            --ctx-len "$ctx" --warmup "$warm" --steps "$steps" "${hist[@]}" --out "$parts/${impl}_$name.json" || true ;;
      esac
    done
  done
fi
finish 0
