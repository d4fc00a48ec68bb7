#!/usr/bin/env bash
# Fills bench/device/carry/ (git-ignored) with what the GPU machine lacks for bench/device/run.sh, since it
# reaches no package registry: the build's Debian packages (the pinned bookworm versions of
# debian-packages.lock, their libraries' runtime closure), unpacked with dpkg -x and pruned to what the build
# reads, packed as one prefix.tar.xz; the diffusers wheel; the golden reference files the tests read.
# Prints the size (the device tool carries at most 64 MiB with the working tree) and the device call.
#
#   bench/device/prepare.sh            (on the development machine; needs apt-get, dpkg, g++, pip)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
carry="$root/bench/device/carry"
golden_src="${PREFDIFF_GOLDEN_DIR:-$root/build/golden/main}"  # generated: cmake --build build --target golden
venv="$(ls -dt "${PREFDIFF_CACHE:-$HOME/.cache/prefdiff}"/venv-*/ 2>/dev/null | head -1)"
py="${PYTHON:-${venv:+$venv/bin/python}}"
py="${py:-python3}"
work="$(mktemp -d /tmp/prefdiff-prepare.XXXXXX)"
trap 'rm -rf "$work"' EXIT
log() { printf '[prepare] %s\n' "$*" >&2; }
die() { printf '[prepare] error: %s\n' "$*" >&2; exit 1; }
arch=x86_64-linux-gnu

# ---- Debian packages: the lock's build deps (no tools: the device has cmake and ninja) + their libraries.
lock_version() { { grep -E "^$1=" "$root/debian-packages.lock" || true; } | head -1 | cut -d= -f2-; }
pkgs=(libtomlplusplus-dev libtomlplusplus3 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
      libhdf5-dev libhdf5-103-1 libhdf5-cpp-103-1 libhdf5-hl-100 libhdf5-hl-cpp-100 libsz2 libaec0
      libboost1.74-dev libboost-filesystem1.74-dev libboost-filesystem1.74.0 libboost-system1.74-dev
      libboost-system1.74.0 libcli11-dev nlohmann-json3-dev libgtest-dev libgloo-dev)
# Runtime closure of the shared libraries linked into the test and bench executables (HDF5 pulls libcurl and
# its TLS/Kerberos stack): every package owning a non-glibc library that ldd lists for them.
for so in /usr/lib/$arch/libhdf5_serial.so.103 /usr/lib/$arch/libhdf5_serial_cpp.so.103 \
          /usr/lib/$arch/libboost_filesystem.so.1.74.0 /usr/lib/$arch/libspdlog.so.1.10 /usr/lib/$arch/libtomlplusplus.so.3; do
  [ -e "$so" ] || die "$so not installed here: run ./quickstart.sh setup first"
  while read -r lib; do
    case "$(basename "$lib")" in libc.so*|libm.so*|libstdc++*|libgcc_s*|ld-linux*|libresolv*|libdl.so*|libpthread*|librt.so*) continue ;; esac
    f="$(readlink -f "$lib")"  # usrmerge: dpkg may know the file under /lib rather than /usr/lib
    owner="$({ dpkg -S "$f" 2>/dev/null || dpkg -S "${f#/usr}" 2>/dev/null || true; } | head -1 | cut -d: -f1)"
    [ -n "$owner" ] && pkgs+=("$owner")
  done < <(ldd "$so" | awk '/=> \//{print $3}')
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
specs=()
for p in "${pkgs[@]}"; do
  # Pinned where debian-packages.lock pins; their library packages and the runtime closure at the
  # release's candidate version (the same bookworm versions the lock's packages were built against).
  v="$(lock_version "$p")"
  if [ -n "$v" ]; then specs+=("$p=$v"); else specs+=("$p"); fi
done
log "downloading ${#specs[@]} Debian packages"
mkdir -p "$work/debs" "$work/root"
(cd "$work/debs" && apt-get download -q "${specs[@]}" >/dev/null 2>"$work/apt.log") || { cat "$work/apt.log" >&2; die "apt-get download failed"; }
for d in "$work"/debs/*.deb; do dpkg -x "$d" "$work/root"; done

# ---- Prune to what the build reads.
r="$work/root"
rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/lintian" "$r/usr/bin" "$r/usr/share/bug" \
       "$r/usr/lib/$arch/hdf5/serial/include/"*.mod "$r/usr/lib/$arch/"*fortran* "$r/usr/share/"{catch2,locale} 2>/dev/null || true
find "$r" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
# Boost: only the headers the sources include (Boost.DLL) and what BoostConfig checks, by the preprocessor.
boost_src="$(grep -rhoE '#include <boost/[^>]+>' "$root"/framework "$root"/backbones "$root"/datasets 2>/dev/null | sort -u)"
printf '%s\n#include <boost/version.hpp>\n#include <boost/config.hpp>\n' "$boost_src" >"$work/boost_all.cpp"
g++ -std=c++17 -M -nostdinc++ -I/usr/include/c++/12 -I/usr/include/$arch/c++/12 -I"$r/usr/include" \
  "$work/boost_all.cpp" -o "$work/boost.d" 2>/dev/null || g++ -std=c++17 -M -I"$r/usr/include" "$work/boost_all.cpp" -o "$work/boost.d"
mkdir -p "$work/boost_keep"
tr ' \\' '\n\n' <"$work/boost.d" | grep "^$r/usr/include/boost/" | sort -u | while read -r h; do
  rel="${h#$r/usr/include/}"; mkdir -p "$work/boost_keep/$(dirname "$rel")"; cp "$h" "$work/boost_keep/$rel"
done
rm -rf "$r/usr/include/boost" && mv "$work/boost_keep/boost" "$r/usr/include/boost"
log "boost headers kept: $(find "$r/usr/include/boost" -type f | wc -l)"
# Absolute symlinks (e.g. hdf5's /usr/lib/... links) would point outside the prefix: make them relative.
find "$r" -type l | while read -r l; do
  t="$(readlink "$l")"
  case "$t" in /*) [ -e "$r$t" ] && ln -sfn "$(realpath --relative-to="$(dirname "$l")" "$r$t")" "$l" || rm -f "$l" ;; esac
done

rm -rf "$carry"
mkdir -p "$carry/wheels" "$carry/golden"
tar -C "$r" -cJf "$carry/prefix.tar.xz" .
printf '%s\n' "${specs[@]}" >"$carry/debian-packages.txt"

# ---- Python: diffusers 0.42.1 (requirements.lock) and its one declared dependency the device image lacks.
dv="$(grep -E '^diffusers==' "$root/requirements.lock" | cut -d= -f3)"
imv="$("$py" -c 'import importlib.metadata as m; print(m.version("importlib_metadata"))' 2>/dev/null || echo 8.7.0)"
log "downloading diffusers==$dv and importlib_metadata==$imv wheels"
"$py" -m pip download -q --no-deps --only-binary=:all: -d "$carry/wheels" "diffusers==$dv" "importlib_metadata==$imv" \
  || die "pip download failed"

# ---- Golden references the GPU tests read (the dpo_step float64 outputs are not read by any test).
for c in unet_sd15_tiny unet_sdxl_tiny dpo_step; do
  [ -d "$golden_src/$c" ] || die "$golden_src/$c missing: run cmake --build build --target golden (or set PREFDIFF_GOLDEN_DIR)"
  mkdir -p "$carry/golden/$c"
  find "$golden_src/$c" -maxdepth 1 -type f ! -name '*.md' ! -name 'f32_vs_f64.json' -exec cp {} "$carry/golden/$c/" \;
done
rm -f "$carry/golden/dpo_step/outputs_f64.safetensors"

size_kib="$(du -sk "$carry" | cut -f1)"
tree_kib="$(cd "$root" && git ls-files -z --cached --others --exclude-standard | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)"
log "carry: $((size_kib / 1024)) MiB ($size_kib KiB); working tree that travels: $((tree_kib / 1024)) MiB; limit 64 MiB together"
du -sh "$carry"/* >&2
[ $((size_kib + tree_kib)) -lt $((64 * 1024)) ] || die "over the 64 MiB carry limit"
cat <<EOF
Device call (the device tool's run verb):
  command:   bash bench/device/run.sh
  carry:     ["bench/device/carry"]
  timeout_s: 600
EOF
