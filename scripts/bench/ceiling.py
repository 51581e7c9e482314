#!/usr/bin/env python3
"""The machine's dense float32 matrix-multiply speed (numpy `@`, 1024x1024x1024), as the
compute ceiling for the cross-encoder, and the model's FLOPs per pair.

Prints `ceiling sgemm_gflops=... blas=... threads=...` and `flops max_len=L
gflop_per_pair=...` lines. Run with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (run.sh
does): they pin older, slower kernels.
"""

import time

import numpy as np

# BERT-MiniLM-L6: 6 layers, hidden 384, intermediate 1536 (the shared model's config.json).
LAYERS, HIDDEN, INTER = 6, 384, 1536


def gflop_per_pair(seq):
    """2 x (matmul weights) x L per layer (Q, K, V, O: 4H^2; FFN: 2HI) plus attention
    scores and weighted sum (QK^T and AV: 2 x 2 x L^2 x H). Embeddings, layer norms,
    softmax, GELU and the one-logit head are < 1% and left out."""
    matmul_params = 4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTER
    per_layer = 2 * matmul_params * seq + 4 * seq * seq * HIDDEN
    return LAYERS * per_layer / 1e9


def sgemm_gflops(n=1024, seconds=3.0):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    for _ in range(3):
        a @ b
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def blas():
    try:
        from threadpoolctl import threadpool_info

        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if info:
            i = info[0]
            return f"{i.get('internal_api')}-{i.get('version')}-{i.get('architecture')}", i.get("num_threads")
    except ImportError:
        pass
    return "unknown", "?"


if __name__ == "__main__":
    name, threads = blas()
    print(f"ceiling sgemm_gflops={sgemm_gflops():.1f} n=1024 blas={name} threads={threads} numpy={np.__version__}")
    for seq in (128, 256):
        print(f"flops max_len={seq} gflop_per_pair={gflop_per_pair(seq):.3f}")
