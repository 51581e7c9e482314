#!/usr/bin/env bash
# Rerank speed on a GPU through ONNX Runtime's CUDA execution provider. Installs
# nothing: it expects the CUDA build of ONNX Runtime 1.31 (from the onnxruntime-gpu
# wheel: libonnxruntime.so with libonnxruntime_providers_cuda.so and
# libonnxruntime_providers_shared.so beside it) named by ORT_DYLIB_PATH, and the CUDA
# and cuDNN libraries it links to on the library path (LD_LIBRARY_PATH).
#
#   ORT_DYLIB_PATH=/path/to/onnxruntime/capi/libonnxruntime.so.1.31.1 scripts/bench/gpu_check.sh [cuda:N]
#
# SECONDPASS_BENCH_BIN: a prebuilt rerank_throughput bench binary to run instead of
# `cargo bench` (for GPU machines without a Rust toolchain). The model folder is
# ../shared/models/cranfield-minilm-l6-ce unless SECONDPASS_BENCH_MODEL_DIR names
# another; BENCH_MODEL picks the file (fp32, int8, or a file name; default fp32).
# A device that cannot be used fails the first run with secondpass's own message.
set -euo pipefail
cd "$(dirname "$0")/../.."
device="${1:-cuda}"
seconds="${BENCH_SECONDS:-8}"
model="${BENCH_MODEL:-fp32}"
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to the CUDA build of libonnxruntime.so (onnxruntime-gpu 1.31)}"
[[ -f "$ORT_DYLIB_PATH" ]] || { echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH does not exist" >&2; exit 2; }
lib_dir="$(dirname "$ORT_DYLIB_PATH")"
[[ -f "$lib_dir/libonnxruntime_providers_cuda.so" ]] ||
  echo "warning: no libonnxruntime_providers_cuda.so beside $ORT_DYLIB_PATH: is this the CPU build?" >&2
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [[ -n "${SECONDPASS_BENCH_BIN:-}" ]]; then
  bench() { "$SECONDPASS_BENCH_BIN" "$@"; }
else
  cargo bench --bench rerank_throughput --no-run 2>&1 | tail -1
  bench() { cargo bench -q --bench rerank_throughput -- "$@"; }
fi
echo "# device $device, model $model, $seconds s per run"
# One caller: latency of a request of 64 pairs; then many callers with large batches.
bench --mode single --device "$device" --model "$model" --batch 64 --pairs 64 --seconds "$seconds"
for batch in 32 128; do
  bench --mode concurrent --device "$device" --model "$model" --batch "$batch" \
    --max-batch-tokens 65536 --callers 16 --pairs 64 --seconds "$seconds"
done
