#!/usr/bin/env bash
# Workers x intra-op threads on this machine's cores, to choose `workers` and
# `intra_threads`: for workers = 1, 2, 4, ... (threads = cores / workers) it runs
# max(8, cores) concurrent callers of 20 pairs (128 tokens) each for BENCH_SECONDS (8)
# and prints pairs/s and p50/p99 latency.
#
#   scripts/bench/cpu_scaling.sh [CORES]     (default: nproc; with fewer, runs under taskset)
#
# BENCH_MODEL: fp32 (default), int8 or a file in the model folder.
# SECONDPASS_BENCH_BIN: a prebuilt rerank_throughput bench binary instead of cargo.
set -euo pipefail
cd "$(dirname "$0")/../.."
cores="${1:-$(nproc)}"
seconds="${BENCH_SECONDS:-8}"
model="${BENCH_MODEL:-fp32}"
pin=()
((cores < $(nproc))) && pin=(taskset -c "0-$((cores - 1))")
if [[ -n "${SECONDPASS_BENCH_BIN:-}" ]]; then
  bench() { "${pin[@]}" "$SECONDPASS_BENCH_BIN" "$@"; }
else
  cargo bench --bench rerank_throughput --no-run 2>&1 | tail -1
  bench() { "${pin[@]}" cargo bench -q --bench rerank_throughput -- "$@"; }
fi
callers=$((cores < 8 ? 8 : cores))
echo "# $cores cores, model $model, $callers callers x 20 pairs, $seconds s per run"
workers=1
while ((workers <= cores)); do
  threads=$((cores / workers))
  for batch in 32; do
    bench --mode concurrent --model "$model" --workers "$workers" --threads "$threads" \
      --batch "$batch" --callers "$callers" --pairs 20 --seconds "$seconds" | grep '^bench'
  done
  workers=$((workers * 2))
done
