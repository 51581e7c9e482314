#!/usr/bin/env bash
# On the GPU machine: reassembles the parts scripts/gpu/pack.sh made (carried one per
# device call into .gpu/), checks every sha256, unpacks them into .gpu/x/ (ort/,
# model/, torch/, eval/, bin/) and prints the environment secondpass needs:
#
#   eval "$(bash scripts/gpu/unpack.sh)"    # ORT_DYLIB_PATH, LD_LIBRARY_PATH, GPU_PAYLOAD
#
# LD_LIBRARY_PATH gets .gpu/x/ort and every nvidia/*/lib folder of the machine's Python
# site-packages (nvidia-cublas, nvidia-cudnn-cu13, nvidia-curand, nvidia-cuda-runtime:
# the CUDA 13 libraries the provider links against). GPU_DIR (default .gpu) is where
# the parts are; --no-ld-path skips the Python lookup (pack.sh --check uses it).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${GPU_DIR:-.gpu}"
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
cat "$dir"/part-* > "$dir/payload.tar.zst"
want="$(awk '$2 == "payload.tar.zst" {print $1}' "$dir/SHA256SUMS")"
got="$(sha256sum "$dir/payload.tar.zst" | cut -d' ' -f1)"
[[ "$got" == "$want" ]] || { say "reassembled archive sha256 $got != $want"; exit 3; }
rm -rf "$dir/x"
mkdir -p "$dir/x"
zstd -q -d --long=27 -c "$dir/payload.tar.zst" | tar -C "$dir/x" -xf -
rm -f "$dir/payload.tar.zst"
(cd "$dir" && awk '$2 ~ /^x\//' SHA256SUMS | sha256sum -c --quiet -) >&2 || { say "unpacked files do not match"; exit 3; }
ln -sf "libonnxruntime.so.$ORT_VERSION" "$dir/x/ort/libonnxruntime.so"
x="$(cd "$dir/x" && pwd)"
ld="$x/ort"
if [[ "${1:-}" != "--no-ld-path" ]]; then
  py="${PYTHON:-python3}"
  nv="$("$py" - <<'PY' 2>/dev/null || true
import glob, os, site
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
say "unpacked into $x: $(ls "$x" | tr '\n' ' ')"
echo "export GPU_PAYLOAD=$x"
echo "export ORT_DYLIB_PATH=$x/ort/libonnxruntime.so"
echo "export LD_LIBRARY_PATH=$ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
