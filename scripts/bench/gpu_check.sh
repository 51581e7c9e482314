#!/usr/bin/env bash
# The GPU check of issue 12 in one run, side by side on one card:
#
#   1. secondpass doctor: the CUDA provider, the fp16 model, one batch;
#   2. secondpass pairs/s (rerank_throughput bench: queue, tokenizer stage, batching,
#      ONNX Runtime CUDA, fp16 model) at batch 16, 64, 256, 1024 and 128 / 256 tokens,
#      plus batch 256 with IO binding off and with tokenizing on the inference thread
#      (the device's defaults flipped, one at a time) and with 4 tokenizer threads;
#   3. PyTorch fp16 eager (and torch.compile where it builds) on the same weights, the
#      same text, the same card (scripts/bench/torch_gpu.py);
#   4. through the binary (scripts/bench/gpu_latency.py): /admin/status's execution
#      provider per reranker, the 16 reference pairs via /rerank within 2e-2 of the CPU
#      fp32 logits, 100 candidates x 256 tokens through the REST proxy in front of the
#      real Qdrant 1.18.3 (the shared binary, carried in the pack) at concurrency 1 / 8 /
#      32 and sustained pairs/s at 32 (256 and 128 tokens), the widened search straight
#      to Qdrant at each (its share, taken out for the latency target), GPU memory
#      (nvidia-smi);
#   5. a summary against the targets (scripts/bench/gpu_summary.py).
#
#   scripts/bench/gpu_check.sh            # on the GPU machine, after the parts of
#                                         # scripts/gpu/pack.sh were carried (see
#                                         # scripts/gpu/README.md)
#   scripts/bench/gpu_check.sh --cpu      # the same steps on this CPU, tiny sizes:
#                                         # a dry run of everything but the GPU
#
# Raw output goes to $OUT (the device tool's folder) or target/gpu-check: gpu_check.log
# (everything), secondpass.log (the server's log), summary.md. Each step's failure is
# recorded and the next step still runs; the exit status is 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=gpu
[[ "${1:-}" == "--cpu" ]] && mode=cpu
out="${OUT:-target/gpu-check}"
mkdir -p "$out"
log="$out/gpu_check.log"
: > "$log"
exec > >(tee -a "$log") 2>&1
failed=()
step() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }
fail() { echo "!!! FAILED: $*"; failed+=("$*"); }
started=$(date +%s)

if [[ $mode == gpu ]]; then
  device=cuda:0 callers=4
  seconds="${BENCH_SECONDS:-4}"
  lengths=(128 256); batches=(16 64 256 1024); ab_batch=256; io_flip=off; tok_flip=0
  lat_seconds="${LATENCY_SECONDS:-8}"; concurrency=1,8,32; sustained=32; pool=100; docs=400
  torch_seconds=3; torch_device=cuda
  if [[ -z "${GPU_PAYLOAD:-}" ]]; then
    env_lines="$(bash scripts/gpu/unpack.sh)" || { echo "cannot unpack .gpu (see scripts/gpu/README.md)"; exit 2; }
    eval "$env_lines"
  fi
  payload="$GPU_PAYLOAD"
  bin="$payload/bin"
  model="$payload/model"
  torch_model="$payload/torch"
  eval_root="$payload"
else
  device=cpu callers=2
  seconds="${BENCH_SECONDS:-1}"
  lengths=(128); batches=(2 4); ab_batch=4; io_flip=on; tok_flip=1
  lat_seconds="${LATENCY_SECONDS:-1}"; concurrency=1,2; sustained=2; pool=4; docs=20
  torch_seconds=1; torch_device=cpu
  export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$PWD/.local/onnxruntime/lib/libonnxruntime.so}"
  shared="${SECONDPASS_SHARED_DIR:-$PWD/../shared}"
  bin="${SECONDPASS_BIN_DIR:-target/release}"
  # The bench binary under its plain name, as pack.sh stages it.
  bench_bin="$(ls -t "$bin"/deps/rerank_throughput-* 2>/dev/null | grep -v '\.d$' | head -1 || true)"
  stage="$out/cpu-stage"
  mkdir -p "$stage/bin"
  # Links, not copies: debug binaries are hundreds of MB.
  [[ -n "$bench_bin" ]] && ln -sf "$(realpath "$bench_bin")" "$stage/bin/rerank_throughput"
  ln -sf "$(realpath "$bin/secondpass")" "$stage/bin/secondpass"
  bin="$stage/bin"
  # The model folder as pack.sh makes it; the fp16 file is made below, as on a GPU
  # machine that was given the fp32 one.
  model="$stage/model"
  mkdir -p "$model"
  cp "$shared/models/cranfield-minilm-l6-ce"/{tokenizer.json,config.json,reference.json} "$model/"
  ln -sf "$(realpath "$shared/models/cranfield-minilm-l6-ce/model.onnx")" "$model/model.onnx"
  torch_model="$shared/models/cranfield-minilm-l6-ce/pytorch"
  eval_root="$shared"
fi
# The real Qdrant comes from $SECONDPASS_SHARED_DIR/qdrant/bin (scripts/qdrant path
# unpacks and checks it): ../shared here, the unpacked pack on the device.
export SECONDPASS_SHARED_DIR="$eval_root" SECONDPASS_EVAL_DIR="$eval_root/eval/cranfield-train"
py="${PYTHON:-python3}"
[[ $mode == cpu && -x .local/venv/bin/python ]] && py=.local/venv/bin/python

step "machine"
echo "mode $mode, device $device, OUT $out"
nproc; grep -m1 'model name' /proc/cpuinfo
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
echo "ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
ls -l "$bin" "$model" 2>&1

step "fp16 model"
if [[ ! -f "$model/model_fp16.onnx" ]]; then
  SECONDPASS_PYTHON="$py" bash scripts/quantize --fp16 "$model/model.onnx" "$model/model_fp16.onnx" || fail "scripts/quantize --fp16"
fi
ls -l "$model/model_fp16.onnx" || fail "no fp16 model"

step "secondpass doctor (io_binding on, then off)"
# Should IO binding fail where plain runs work, the rest runs without it (and says so).
io_args=() latency_extra=""
for io in true false; do
  cat > "$out/doctor-$io.toml" <<TOML
[rerankers.local]
kind = "onnx"
model_dir = "$model"
model_file = "model_fp16.onnx"
device = "$device"
max_length = 256
io_binding = $io
TOML
  if ! "$bin/secondpass" doctor --config "$out/doctor-$io.toml"; then
    fail "doctor io_binding=$io"
    [[ $io == true ]] && { io_args=(--io-binding off); latency_extra="io_binding = false"; }
  fi
  rm -f "$out/doctor-$io.toml"
done
((${#io_args[@]})) && echo "!!! IO binding failed: every run below has it off"

step "secondpass pairs/s (rerank_throughput, fp16, $device)"
bench() {
  SECONDPASS_BENCH_MODEL_DIR="$model" "$bin/rerank_throughput" --mode concurrent --device "$device" \
    --model model_fp16.onnx --seconds "$seconds" "${io_args[@]}" "$@" | grep '^bench ' || fail "bench $*"
}
for len in "${lengths[@]}"; do
  for b in "${batches[@]}"; do
    # Four callers of `b` pairs each: every batch holds `b` rows, and the next request
    # is tokenized while one runs.
    bench --max-len "$len" --batch "$b" --max-batch-tokens $((b * len)) --callers "$callers" --pairs "$b"
  done
  # What IO binding and the tokenizer stage give: each of the device's defaults flipped.
  bench --max-len "$len" --batch "$ab_batch" --max-batch-tokens $((ab_batch * len)) --callers "$callers" --pairs "$ab_batch" --io-binding "$io_flip"
  bench --max-len "$len" --batch "$ab_batch" --max-batch-tokens $((ab_batch * len)) --callers "$callers" --pairs "$ab_batch" --tokenizer-threads "$tok_flip"
  # Tokenizing 256 long documents may take longer than running them on a GPU: more
  # tokenizer threads.
  [[ $mode == gpu ]] && bench --max-len "$len" --batch "$ab_batch" --max-batch-tokens $((ab_batch * len)) --callers 8 --pairs "$ab_batch" --tokenizer-threads 4
done

step "PyTorch (same weights, same text)"
if "$py" -c "import torch, transformers" 2>/dev/null; then
  tb=$(IFS=,; echo "${batches[*]}"); tl=$(IFS=,; echo "${lengths[*]}")
  "$py" scripts/bench/torch_gpu.py --model "$torch_model" --device "$torch_device" --lengths "$tl" \
    --batches "$tb" --seconds "$torch_seconds" --compile-batches "$ab_batch" || fail "torch_gpu.py"
else
  echo "torch or transformers not installed for $py: PyTorch side skipped"
  [[ $mode == gpu ]] && fail "no torch"
fi

step "the real Qdrant"
bash scripts/qdrant path || fail "no Qdrant binary under $SECONDPASS_SHARED_DIR/qdrant/bin"

step "through the binary: status, reference pairs, proxy latency, GPU memory"
"$py" scripts/bench/gpu_latency.py --bin-dir "$bin" --model-dir "$model" --model-file model_fp16.onnx \
  --device "$device" --lengths "$(IFS=,; echo "${lengths[*]}" | tr ',' '\n' | sort -rn | paste -sd,)" \
  --concurrency "$concurrency" --sustained-concurrency "$sustained" --seconds "$lat_seconds" \
  --pool "$pool" --docs "$docs" --log "$out/secondpass.log" --extra "$latency_extra" || fail "gpu_latency.py"
grep -m1 "reranker loaded" "$out/secondpass.log" || fail "no 'reranker loaded' line in the server log"

step "summary"
"$py" scripts/bench/gpu_summary.py "$log" --mode "$mode" > "$out/summary.md" || fail "gpu_summary.py"
cat "$out/summary.md"
[[ $mode == cpu ]] && rm -rf "$stage"
echo
echo "gpu_check: $mode run took $(( $(date +%s) - started )) s; ${#failed[@]} step(s) failed"
for f in "${failed[@]}"; do echo "  - $f"; done
((${#failed[@]} == 0))
