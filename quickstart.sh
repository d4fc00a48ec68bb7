#!/usr/bin/env bash
# prefdiff set-up, build and entry points.
#
#   ./quickstart.sh main    install everything, build, run the main job
#   ./quickstart.sh test    install everything, build, run the tests (what CI runs)
#   ./quickstart.sh setup   only install (Debian packages + cached Python environment)
#   ./quickstart.sh build   install and build
#
# Pins live in debian-packages.lock and requirements.lock. The Python environment (which also provides
# LibTorch through the torch wheel) is installed once per machine into
#   ${PREFDIFF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prefdiff}/venv-<hash of requirements.lock>
# so a fresh clone on the same machine reuses it and set-up takes seconds.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PREFDIFF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/prefdiff}"
build_dir="${PREFDIFF_BUILD_DIR:-$root/build}"
jobs="${PREFDIFF_JOBS:-$(nproc)}"

log() { printf '[quickstart] %s\n' "$*" >&2; }
die() { printf '[quickstart] error: %s\n' "$*" >&2; exit 1; }

lock_lines() { grep -v -E '^\s*(#|$)' "$1"; }

install_debian_packages() {
  local missing=() spec name want have
  while read -r spec; do
    name="${spec%%=*}"; want="${spec#*=}"
    have="$(dpkg-query -W -f='${Version}' "$name" 2>/dev/null || true)"
    [ "$have" = "$want" ] || missing+=("$spec")
  done < <(lock_lines "$root/debian-packages.lock")
  [ ${#missing[@]} -eq 0 ] && { log "Debian packages: all pinned versions present"; return; }
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand (see debian-packages.lock)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log "Debian packages: installing ${missing[*]}"
  $sudo apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
    die "could not install the pinned Debian packages above. If your release carries other versions, edit debian-packages.lock (and say so in your change)"
  fi
}

venv_dir() {
  local key
  key="$(cat "$root/requirements.lock" | sha256sum | cut -c1-16)"
  printf '%s/venv-%s' "$cache" "$key"
}

install_python_env() {
  local venv; venv="$(venv_dir)"
  if [ -f "$venv/.complete" ]; then
    log "Python environment: cached at $venv"
    return
  fi
  log "Python environment: installing into $venv (first time on this machine: a few minutes)"
  # Only a finished install is marked complete; an interrupted one is removed and redone.
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$root/requirements.lock"
  touch "$venv/.complete"
}

configure_and_build() {
  local venv; venv="$(venv_dir)"
  local torch_prefix
  torch_prefix="$("$venv/bin/python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  export CCACHE_DIR="${CCACHE_DIR:-$cache/ccache}"
  # Hits across clones in other folders (CI clones afresh) and with precompiled headers.
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$root}"
  export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
  export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
  # Configured every time (seconds): a new requirements.lock means a new venv, whose LibTorch and
  # Python an existing build folder must pick up.
  local generator=()
  [ -f "$build_dir/CMakeCache.txt" ] || generator=(-G Ninja)
  cmake -S "$root" -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$torch_prefix" -DPython3_EXECUTABLE="$venv/bin/python" \
    -DPREFDIFF_PYTHON="$venv/bin/python" "${launcher[@]}" >/dev/null
  cmake --build "$build_dir" -j "$jobs"
}

# The main job: the default sweep (five objectives x flip rates 0, 0.2, 0.4 x two seeds in the synthetic
# world; docs/sweeps.md), then its table and where its plots are. Resumable: run it again after a stop.
main_job() {
  local bin="$build_dir/bin/prefdiff" out="${PREFDIFF_SWEEP_DIR:-$root/runs/sweeps/default}"
  "$bin" version
  "$bin" sweep "$root/recipes/sweeps/default.toml" --output "$out" "$@"
  echo
  cat "$out/results.md"
  echo
  echo "Results: $out/results.md, $out/results.csv; plots: $(ls "$out"/plots/*.png 2>/dev/null | tr '\n' ' ')"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  setup) install_debian_packages; install_python_env ;;
  build) install_debian_packages; install_python_env; configure_and_build ;;
  main)
    install_debian_packages; install_python_env; configure_and_build
    main_job "$@" ;;
  test)
    install_debian_packages; install_python_env; configure_and_build
    cd "$build_dir"
    exec ctest --output-on-failure -j "$jobs" -LE slow "$@" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
