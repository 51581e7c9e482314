#!/usr/bin/env bash
# Packs the CUDA build of ONNX Runtime for a GPU machine that has no network, in
# pieces small enough to carry one per device call (see scripts/gpu/README.md).
#
#   scripts/gpu/pack.sh [--check]
#
# Downloads onnxruntime-gpu==1.31.1 from PyPI (pip download, no install), takes
# libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
# libonnxruntime_providers_cuda.so out of it, compresses them into one tar with
# `zstd -6 --long=27` (the CUDA provider is 284 MB raw, ~188 MB compressed) and splits
# that into parts under 60 MiB: .gpu/part-aa, .gpu/part-ab, ... (.gpu/ is git-ignored).
# .gpu/SHA256SUMS holds the archive's and each part's sha256; scripts/gpu/unpack.sh
# checks them. --check then reassembles the parts here and compares the libraries
# byte for byte with the wheel's (the round trip unpack.sh does on the device).
set -euo pipefail
cd "$(dirname "$0")/../.."
ORT_VERSION="${ORT_VERSION:-1.31.1}"
PART_MIB="${PART_MIB:-60}"     # split size; parts come out just under it
out=.gpu
libs=("libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)
command -v zstd >/dev/null || { echo "pack.sh: needs zstd (apt-get install zstd)" >&2; exit 2; }
py="${PYTHON:-python3}"
mkdir -p "$out/whl"
whl="$(ls "$out"/whl/onnxruntime_gpu-"$ORT_VERSION"-*.whl 2>/dev/null | head -1 || true)"
if [[ -z "$whl" ]]; then
  # The libraries are the same in every CPython wheel of a release; cp311 is pinned so
  # the download does not depend on this machine's Python.
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d "$out/whl" "onnxruntime-gpu==$ORT_VERSION"
  whl="$(ls "$out"/whl/onnxruntime_gpu-"$ORT_VERSION"-*.whl | head -1)"
fi
echo "wheel: $whl ($(du -h "$whl" | cut -f1))"
rm -rf "$out/lib" "$out"/part-* "$out/ort-gpu.tar.zst"
mkdir -p "$out/lib"
"$py" - "$whl" "$out/lib" "${libs[@]}" <<'PY'
import os, shutil, sys, zipfile
whl, dest, *want = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    names = z.namelist()
    for lib in want:
        hits = [n for n in names if n.endswith("/capi/" + lib)]
        if not hits:
            sys.exit(f"{lib} not in {whl}; it has: " + " ".join(n for n in names if ".so" in n))
        with z.open(hits[0]) as src, open(os.path.join(dest, lib), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
ls -l "$out/lib"
tar -C "$out/lib" -cf - "${libs[@]}" | zstd -q -6 --long=27 -T0 -o "$out/ort-gpu.tar.zst"
split -b "$((PART_MIB * 1024 * 1024 - 1))" -a 2 "$out/ort-gpu.tar.zst" "$out/part-"
(cd "$out" && sha256sum ort-gpu.tar.zst part-* > SHA256SUMS && (cd lib && sha256sum "${libs[@]}") >> SHA256SUMS)
rm "$out/ort-gpu.tar.zst"
ls -l "$out"/part-*
echo "parts: $(cd "$out" && ls part-* | tr '\n' ' ')"
if [[ "${1:-}" == "--check" ]]; then
  check="$(mktemp -d)"
  trap 'rm -rf "$check"' EXIT
  GPU_DIR="$out" GPU_LIB_DIR="$check/lib" bash scripts/gpu/unpack.sh --no-ld-path >/dev/null
  for lib in "${libs[@]}"; do
    cmp "$out/lib/$lib" "$check/lib/$lib"
  done
  echo "round trip ok: the parts reassemble to the same ${#libs[@]} libraries (sha256 checked)"
fi
