#!/usr/bin/env python3
"""Rerank pairs/s in Python on the same weights and text as benches/rerank_throughput.rs:

  st      sentence-transformers CrossEncoder (PyTorch, CPU) on the model's pytorch/ folder
  ort-py  onnxruntime's Python API on model.onnx / model_int8.onnx, tokenizing with the
          `tokenizers` package and padding each batch to its longest pair

Each configuration scores requests of --pairs documents (cut at max_len tokens; the
documents are Cranfield abstracts joined to >= 300 words, as in the Rust bench), in
batches of --batch, for at least --seconds, and prints one `bench impl=...` line.
Tokenization is included in the time, as it is for secondpass.

  python_rerank.py [--impl st,ort-py] [--models fp32,int8] [--max-len 128,256]
                   [--batch 1,16,64] [--pairs 64] [--seconds 4] [--threads 0]
"""

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "cranfield-minilm-l6-ce"
EVAL = SHARED / "eval" / "cranfield-train"


def corpus(n):
    """The first query and n documents of >= 300 words (abstracts joined in order)."""
    docs, current = [], []
    for line in (EVAL / "corpus.jsonl").read_text().splitlines():
        current += json.loads(line)["text"].split()
        current.append("")
        if len([w for w in current if w]) >= 300:
            docs.append(" ".join(w for w in current if w))
            current = []
            if len(docs) == n:
                break
    query = json.loads((EVAL / "queries.jsonl").read_text().splitlines()[0])["text"]
    return query, docs


def timed(run, pairs, seconds):
    """pairs/s of `run()` (one request) over at least `seconds` and 2 requests, after a warm-up."""
    run()
    n, start = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - start < seconds:
        run()
        n += 1
    return pairs * n / (time.perf_counter() - start), n


def ort_runner(file, max_len, batch, threads, query, docs):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(MODEL / file), opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.enable_truncation(max_len, strategy="only_second")
    pairs = [(query, d) for d in docs]

    def run():
        for i in range(0, len(pairs), batch):
            encs = tok.encode_batch(pairs[i : i + batch])
            width = max(len(e.ids) for e in encs)
            pad = lambda rows: np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)
            session.run(
                None,
                {
                    "input_ids": pad([e.ids for e in encs]),
                    "attention_mask": pad([e.attention_mask for e in encs]),
                    "token_type_ids": pad([e.type_ids for e in encs]),
                },
            )

    return run


def st_runner(max_len, batch, threads, query, docs):
    import torch
    from sentence_transformers import CrossEncoder

    if threads:
        torch.set_num_threads(threads)
    model = CrossEncoder(str(MODEL / "pytorch"), max_length=max_len, device="cpu")
    pairs = [(query, d) for d in docs]

    def run():
        model.predict(pairs, batch_size=batch, show_progress_bar=False, convert_to_numpy=True)

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", default="st,ort-py")
    p.add_argument("--models", default="fp32,int8", help="for ort-py; st always runs fp32")
    p.add_argument("--max-len", default="128,256")
    p.add_argument("--batch", default="1,16,64")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=0, help="0: the library's default (cores)")
    a = p.parse_args()
    query, docs = corpus(a.pairs)
    ints = lambda s: [int(x) for x in s.split(",")]
    for impl in a.impl.split(","):
        models = ["fp32"] if impl == "st" else a.models.split(",")
        for model in models:
            for max_len in ints(a.max_len):
                for batch in ints(a.batch):
                    if impl == "st":
                        run = st_runner(max_len, batch, a.threads, query, docs)
                    else:
                        file = "model.onnx" if model == "fp32" else "model_int8.onnx"
                        run = ort_runner(file, max_len, batch, a.threads, query, docs)
                    rate, n = timed(run, a.pairs, a.seconds)
                    print(
                        f"bench impl={impl} model={model} max_len={max_len} batch={batch} "
                        f"pairs={a.pairs} | pairs_per_s={rate:.1f} requests={n}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
