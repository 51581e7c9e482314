#!/usr/bin/env bash
# Packs what the GPU check needs on a device machine that has no network, in parts
# small enough to carry one per device call (scripts/gpu/README.md has the calls).
#
#   scripts/gpu/pack.sh [--check] [--no-bins]
#
# Stages under .gpu/stage/ (git-ignored):
#   ort/    libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so and
#           libonnxruntime_providers_cuda.so from the PyPI onnxruntime-gpu==1.31.1 wheel
#           (pip download; a CUDA 13 build)
#   model/  the shared model as float16 ONNX (scripts/quantize --fp16), its tokenizer,
#           config.json and reference.json (the 16 reference pairs with CPU fp32 logits)
#   torch/  the same weights for PyTorch (config, tokenizer, model.safetensors in float16)
#   eval/   the Cranfield queries and corpus the benches read
#   qdrant/bin/  the real Qdrant 1.18.3 as shipped in ../shared (zstd, ~25 MB): the proxy
#           latency step runs secondpass in front of it (scripts/qdrant path unpacks it)
#   bin/    stripped release binaries: secondpass, the rerank_throughput bench (from
#           SECONDPASS_BIN_DIR, default target/release; --no-bins skips)
# then tars them through `zstd -6 --long=27` and splits the archive into parts under
# 60 MiB: .gpu/part-aa, .gpu/part-ab, ... .gpu/SHA256SUMS holds the archive's, each
# part's and each staged file's sha256; scripts/gpu/unpack.sh checks all of them.
# --check reassembles the parts here with unpack.sh and compares every file.
set -euo pipefail
cd "$(dirname "$0")/../.."
ORT_VERSION="${ORT_VERSION:-1.31.1}"
PART_MIB="${PART_MIB:-60}"
SHARED="${SECONDPASS_SHARED_DIR:-../shared}"
MODEL="$SHARED/models/cranfield-minilm-l6-ce"
BIN_DIR="${SECONDPASS_BIN_DIR:-target/release}"
py="${PYTHON:-python3}"
out=.gpu
stage="$out/stage"
check=0 bins=1
for a in "$@"; do
  case "$a" in
    --check) check=1 ;;
    --no-bins) bins=0 ;;
    *) echo "pack.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
command -v zstd >/dev/null || { echo "pack.sh: needs zstd (apt-get install zstd)" >&2; exit 2; }
[[ -f "$MODEL/model.onnx" ]] || { echo "pack.sh: no $MODEL/model.onnx (set SECONDPASS_SHARED_DIR)" >&2; exit 2; }
mkdir -p "$out/whl"
rm -rf "$stage" "$out"/part-* "$out/SHA256SUMS" "$out/payload.tar.zst"
mkdir -p "$stage"/{ort,model,torch,eval,qdrant/bin,bin}

# ort/
whl="$(ls "$out"/whl/onnxruntime_gpu-"$ORT_VERSION"-*.whl 2>/dev/null | head -1 || true)"
if [[ -z "$whl" ]]; then
  # The libraries are the same in every CPython wheel of a release; cp311 is pinned so
  # the download does not depend on this machine's Python.
  "$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d "$out/whl" "onnxruntime-gpu==$ORT_VERSION"
  whl="$(ls "$out"/whl/onnxruntime_gpu-"$ORT_VERSION"-*.whl | head -1)"
fi
echo "wheel: $whl"
"$py" - "$whl" "$stage/ort" "libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so \
  libonnxruntime_providers_cuda.so <<'PY'
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
        os.chmod(os.path.join(dest, lib), 0o755)
PY

# model/: float16 ONNX made here (the fp32 file is too big to carry as well)
cp "$MODEL"/{tokenizer.json,config.json,reference.json} "$stage/model/"
bash scripts/quantize --fp16 "$MODEL/model.onnx" "$stage/model/model_fp16.onnx" >/dev/null

# torch/: the PyTorch weights in float16 (what `.half()` would make of them), written
# with the standard library so that no torch is needed here.
cp "$MODEL"/pytorch/{config.json,tokenizer.json,tokenizer_config.json} "$stage/torch/"
"$py" - "$MODEL/pytorch/model.safetensors" "$stage/torch/model.safetensors" <<'PY'
import json, struct, sys
src, dst = sys.argv[1:]
data = open(src, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8 : 8 + n])
body = memoryview(data)[8 + n :]
out_header, chunks, offset = {}, [], 0
import array
for name, t in header.items():
    if name == "__metadata__":
        out_header[name] = t
        continue
    a, b = t["data_offsets"]
    raw = body[a:b]
    if t["dtype"] == "F32":
        floats = array.array("f"); floats.frombytes(raw)
        raw = struct.pack(f"<{len(floats)}e", *floats)
        t = dict(t, dtype="F16")
    else:
        raw = bytes(raw)
    out_header[name] = dict(t, data_offsets=[offset, offset + len(raw)])
    chunks.append(raw)
    offset += len(raw)
h = json.dumps(out_header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(dst, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for c in chunks:
        f.write(c)
PY

# eval/
mkdir -p "$stage/eval/cranfield-train"
cp "$SHARED"/eval/cranfield-train/{corpus.jsonl,queries.jsonl} "$stage/eval/cranfield-train/"

# qdrant/bin/: as it is (already zstd; scripts/qdrant checks its sha256 when unpacking)
qdrant_zst="$SHARED/qdrant/bin/qdrant-1.18.3-x86_64-linux.zst"
[[ -f "$qdrant_zst" ]] || { echo "pack.sh: no $qdrant_zst (set SECONDPASS_SHARED_DIR)" >&2; exit 2; }
cp "$qdrant_zst" "$stage/qdrant/bin/"

# bin/
if ((bins)); then
  bench="$(ls -t "$BIN_DIR"/deps/rerank_throughput-* 2>/dev/null | grep -v '\.d$' | head -1 || true)"
  for b in "$BIN_DIR/secondpass" "$bench"; do
    [[ -n "$b" && -x "$b" ]] || { echo "pack.sh: missing release binary ${b:-rerank_throughput bench} (cargo build --release --workspace --bins; cargo bench --bench rerank_throughput --no-run)" >&2; exit 2; }
  done
  cp "$BIN_DIR/secondpass" "$stage/bin/"
  cp "$bench" "$stage/bin/rerank_throughput"
  strip "$stage"/bin/*
fi

(cd "$stage" && find . -type f | sort | xargs sha256sum) > "$out/FILES"
du -sh "$stage"/*
tar -C "$stage" -cf - . | zstd -q -6 --long=27 -T0 -o "$out/payload.tar.zst"
split -b "$((PART_MIB * 1024 * 1024 - 1))" -a 2 "$out/payload.tar.zst" "$out/part-"
(cd "$out" && sha256sum payload.tar.zst part-* && sed 's|  \./|  x/|' FILES) > "$out/SHA256SUMS"
rm "$out/payload.tar.zst" "$out/FILES"
ls -l "$out"/part-* "$out/SHA256SUMS"
echo "parts: $(cd "$out" && ls part-* | tr '\n' ' ')"
if ((check)); then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  cp "$out"/part-* "$out/SHA256SUMS" "$tmp/"
  GPU_DIR="$tmp" bash scripts/gpu/unpack.sh --no-ld-path >/dev/null
  rm "$tmp/x/ort/libonnxruntime.so"
  diff -r "$stage" "$tmp/x"
  echo "round trip ok: the parts reassemble to the staged files (sha256 and byte for byte)"
fi
