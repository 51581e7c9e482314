#!/usr/bin/env python3
"""Tunes `chunk_aggregate` on the tuning half of the Cranfield training queries.

    QDRANT_URL=... .local/venv/bin/python scripts/bench/tune_chunks.py [--pool 30] [--out tune.json]

Takes Qdrant's BM25 top `--pool` for each tuning query (even positions by id, see
cranfield.split), splits each document into token windows exactly as secondpass does
(`[CLS] query [SEP] passage [SEP]`, max length 128, the query kept whole, passages of
`chunk_tokens` or what fits beside the query), scores every passage once with the fp32
model (onnxruntime, 2 threads), then folds the passage scores with every aggregate
offline and prints nDCG@10 per (chunk size, aggregate). Truncation at 128 is the first
passage of the "fit" size. The held-out half is never looked at here."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cranfield import MODEL_DIR, bm25, create, load, ndcg10, split  # noqa: E402

MAX_LENGTH = 128
SIZES = [("fit", None, 0, 4), ("96/16", 96, 16, 4), ("64/16", 64, 16, 4)]


def windows(n, size, overlap, most):
    stride = max(1, size - overlap)
    out, start = [], 0
    while True:
        end = min(start + size, n)
        out.append((start, end))
        if end >= n or len(out) >= most:
            return out
        start += stride


def aggregates():
    out = {"max": lambda s: max(s), "mean": lambda s: sum(s) / len(s), "first": lambda s: s[0]}
    for w in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]:
        out[f"blend:{w}"] = lambda s, w=w: w * s[0] + (1 - w) * max(s)
    for d in [0.25, 0.5, 1, 2, 4]:
        out[f"decay:{d}"] = lambda s, d=d: max(x - d * i for i, x in enumerate(s))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=30)
    ap.add_argument("--out", default="target/bench/tune_chunks.json")
    a = ap.parse_args()
    corpus, queries, qrels = load()
    tune, _held_out = split(queries)
    docs = {d["id"]: d for d in corpus}
    base = os.environ["QDRANT_URL"] + "/collections/cranfield_tune"
    create(base, corpus)
    tok = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    sess_opts = ort.SessionOptions()
    sess_opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(MODEL_DIR / "model.onnx"), sess_opts)
    budget = MAX_LENGTH - 3
    doc_ids = {}
    pairs = []  # (size, qid, did, passage index, ids, type_ids)
    cands = {}
    for q in tune:
        hits = bm25(base, q["text"], a.pool)["result"]["points"]
        cands[q["id"]] = [h["id"] for h in hits]
        qi = tok.encode(q["text"], add_special_tokens=False).ids[: budget // 2]
        for did in cands[q["id"]]:
            if did not in doc_ids:
                doc_ids[did] = tok.encode(docs[did]["text"], add_special_tokens=False).ids
            d = doc_ids[did]
            for name, size, overlap, most in SIZES:
                room = max(1, budget - len(qi))
                size_ = room if size is None else max(1, min(size, room))
                for k, (s, e) in enumerate(windows(len(d), size_, overlap, most)):
                    ids = [cls] + qi + [sep] + d[s:e] + [sep]
                    types = [0] * (len(qi) + 2) + [1] * (e - s + 1)
                    pairs.append((name, q["id"], did, k, ids, types))
    print(f"{len(tune)} tuning queries, pool {a.pool}, {len(pairs)} passage pairs", flush=True)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][4]))
    scores = [0.0] * len(pairs)
    started = time.monotonic()
    for b in range(0, len(order), 32):
        rows = order[b:b + 32]
        width = max(len(pairs[i][4]) for i in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, i in enumerate(rows):
            n = len(pairs[i][4])
            ids[r, :n] = pairs[i][4]
            types[r, :n] = pairs[i][5]
            mask[r, :n] = 1
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        for r, i in enumerate(rows):
            scores[i] = float(out[r][0])
    print(f"scored in {time.monotonic() - started:.0f} s", flush=True)
    passages = {}
    for (name, qid, did, k, _, _), s in zip(pairs, scores):
        passages.setdefault(name, {}).setdefault(qid, {}).setdefault(did, []).append(s)
    table = {}
    for name, _, _, _ in SIZES:
        for agg, f in aggregates().items():
            vals = []
            for q in tune:
                per = passages[name][q["id"]]
                ranked = sorted(cands[q["id"]], key=lambda d: -f(per[d]))
                vals.append(ndcg10(ranked, qrels[q["id"]]))
            table[f"{name} {agg}"] = sum(vals) / len(vals)
    bm = sum(ndcg10(cands[q["id"]], qrels[q["id"]]) for q in tune) / len(tune)
    print(f"BM25 {bm:.4f}; truncate (= fit first) {table['fit first']:.4f}")
    for k, v in sorted(table.items(), key=lambda kv: -kv[1]):
        print(f"{k:20s} {v:.4f}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"pool": a.pool, "bm25": bm, "table": table}, indent=1))
    requests_delete = __import__("requests").delete
    requests_delete(base, timeout=30)


if __name__ == "__main__":
    main()
