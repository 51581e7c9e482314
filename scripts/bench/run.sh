#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md in one bounded run (about 8 minutes on 2 cores),
# loopback only. Writes the log to target/bench/run-<time>.log and prints a summary.
#
#   scripts/bench/run.sh [--quick] [--bench-deps] [--skip-proxy] [--skip-python]
#
#   --quick       shorter runs (about 3 minutes; noisier numbers)
#   --bench-deps  first pip-install scripts/bench/requirements.txt into .local/venv
#                 (torch + sentence-transformers for the CrossEncoder comparison)
#   --skip-python / --skip-proxy   leave those parts out
#
# Needs scripts/setup --python (ONNX Runtime, .local/venv) and ../shared (the model
# and Cranfield). Builds with `cargo bench --no-run` and `cargo build --release`.
# Other work on the machine disturbs the numbers: run it on a quiet machine.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
py=".local/venv/bin/python"
quick=0 deps=0 proxy=1 python=1
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --bench-deps) deps=1 ;;
    --skip-proxy) proxy=0 ;;
    --skip-python) python=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
if ((quick)); then s_single=2 s_conc=5 s_py=2 s_proxy=4 s_rerank=6; else s_single=4 s_conc=10 s_py=4 s_proxy=10 s_rerank=12; fi
[[ -x "$py" ]] || { echo "$py missing: run scripts/setup --python" >&2; exit 2; }
if ((deps)); then "$py" -m pip install -q -r scripts/bench/requirements.txt; fi

mkdir -p target/bench
log="target/bench/run-$(date +%Y%m%d-%H%M%S).log"
exec > >(tee "$log") 2>&1

echo "# secondpass benchmarks $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\" mem=$(free -g | awk '/Mem:/{print $2}')GiB load=\"$(cut -d' ' -f1-3 /proc/loadavg)\""
echo "onnxruntime: $(basename "$(readlink -f .local/onnxruntime/lib/libonnxruntime.so)")"

echo "## build"
cargo bench --bench rerank_throughput --no-run 2>&1 | tail -1
bench() { cargo bench -q --bench rerank_throughput -- "$@" 2>/dev/null | grep '^bench'; }

echo "## b) compute ceiling (numpy sgemm, OPENBLAS_CORETYPE unset)"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" scripts/bench/ceiling.py

echo "## a) secondpass (Rust) pairs/s: one caller, 64 pairs per request"
for model in fp32 int8; do
  for len in 128 256; do
    for batch in 1 16 64; do
      bench --mode single --model "$model" --max-len "$len" --batch "$batch" --pairs 64 --seconds "$s_single"
    done
  done
done

if ((python)); then
  echo "## a) Python on the same weights and text"
  impls="ort-py"
  if "$py" -c 'import sentence_transformers, torch' 2>/dev/null; then
    impls="st,ort-py"
  else
    echo "sentence-transformers/torch not installed (run with --bench-deps): CrossEncoder skipped"
  fi
  "$py" scripts/bench/python_rerank.py --impl "$impls" --seconds "$s_py" --pairs 64
fi

echo "## 1) batching across requests vs per request: 8 callers x 20 and x 4 pairs (128 tokens), fp32, batch 32"
for pairs in 20 4; do
  bench --mode compare --callers 8 --pairs "$pairs" --batch 32 --seconds "$s_conc"
done
echo "## 4) threads: 8 callers x 20 pairs, fp32, workers x intra-op threads, batch 16/32/64"
for wt in "1 2" "2 1"; do
  set -- $wt
  for batch in 16 32 64; do
    bench --mode concurrent --workers "$1" --threads "$2" --batch "$batch" --callers 8 --pairs 20 --seconds "$s_conc"
  done
done

if ((proxy)); then
  echo "## c/d/e) proxy (release binaries)"
  cargo build -q --release --workspace --bins
  "$py" scripts/bench/proxy_bench.py --bin-dir "${CARGO_TARGET_DIR:-target}/release" \
    --seconds "$s_proxy" --rerank-seconds "$s_rerank"
fi

echo "## summary"
"$py" scripts/bench/summarize.py "$log"
echo "log: $log"
