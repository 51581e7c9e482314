#!/usr/bin/env bash
# On the GPU machine: reassembles the parts scripts/gpu/pack.sh made (carried one per
# device call into .gpu/), checks their sha256, unpacks the CUDA build of ONNX
# Runtime, and prints the environment secondpass needs:
#
#   eval "$(bash scripts/gpu/unpack.sh)"     # sets ORT_DYLIB_PATH and LD_LIBRARY_PATH
#
# LD_LIBRARY_PATH gets the unpacked folder and every nvidia/*/lib folder of the
# machine's Python site-packages (nvidia-cublas, nvidia-cudnn-cu13, nvidia-curand,
# nvidia-cuda-runtime: the CUDA 13 libraries the provider links against).
# GPU_DIR (default .gpu) is where the parts are, GPU_LIB_DIR (default $GPU_DIR/lib)
# where the libraries go; --no-ld-path skips the Python lookup (for pack.sh --check).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${GPU_DIR:-.gpu}"
lib="${GPU_LIB_DIR:-$dir/lib}"
ORT_VERSION="${ORT_VERSION:-1.31.1}"
say() { echo "unpack.sh: $*" >&2; }
[[ -f "$dir/SHA256SUMS" ]] || { say "no $dir/SHA256SUMS (carry .gpu/SHA256SUMS with the first part)"; exit 2; }
# Every part named in SHA256SUMS must be here and intact before anything is unpacked.
missing=()
while read -r sum name; do
  [[ "$name" == part-* ]] || continue
  if [[ ! -f "$dir/$name" ]]; then missing+=("$name"); continue; fi
  echo "$sum  $dir/$name" | sha256sum -c --quiet - >&2 || { say "$name is corrupt"; exit 3; }
done < "$dir/SHA256SUMS"
((${#missing[@]} == 0)) || { say "missing parts: ${missing[*]} (carry each in its own call, back to back)"; exit 3; }
mkdir -p "$lib"
want="$(awk '$2 == "ort-gpu.tar.zst" {print $1}' "$dir/SHA256SUMS")"
cat "$dir"/part-* > "$dir/ort-gpu.tar.zst"
got="$(sha256sum "$dir/ort-gpu.tar.zst" | cut -d' ' -f1)"
[[ "$got" == "$want" ]] || { say "reassembled archive sha256 $got != $want"; exit 3; }
zstd -q -d --long=27 -c "$dir/ort-gpu.tar.zst" | tar -C "$lib" -xf -
rm -f "$dir/ort-gpu.tar.zst"
# The libraries themselves, as pack.sh recorded them.
(cd "$lib" && awk '$2 ~ /^lib/' "$OLDPWD/$dir/SHA256SUMS" | sha256sum -c --quiet -) >&2 ||
  { say "unpacked libraries do not match"; exit 3; }
ln -sf "libonnxruntime.so.$ORT_VERSION" "$lib/libonnxruntime.so"
lib_abs="$(cd "$lib" && pwd)"
ld="$lib_abs"
if [[ "${1:-}" != "--no-ld-path" ]]; then
  py="${PYTHON:-python3}"
  nv="$("$py" - <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()]
seen = []
for r in roots:
    for d in sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib"))):
        if d not in seen:
            seen.append(d)
print(":".join(seen))
PY
)"
  if [[ -z "$nv" ]]; then
    say "warning: no nvidia/*/lib under $py's site-packages; CUDA libraries must come from the system"
  else
    ld="$ld:$nv"
  fi
fi
say "ONNX Runtime $ORT_VERSION (CUDA) in $lib_abs"
echo "export ORT_DYLIB_PATH=$lib_abs/libonnxruntime.so"
echo "export LD_LIBRARY_PATH=$ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
