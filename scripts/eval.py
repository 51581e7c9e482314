#!/usr/bin/env python3
"""End-to-end quality check on the Cranfield collection: nDCG@10 of Qdrant's own order
(BM25, server-side, through a Document query) versus the order secondpass returns
after reranking the top `--pool` candidates with the local cross-encoder.

    .local/venv/bin/python scripts/eval.py [--queries N] [--pool 50] [--model-file model_int8.onnx]
    QDRANT_URL=http://qdrant:6333 ... scripts/eval.py      # against another Qdrant

It starts the real Qdrant 1.18.3 from ../shared/qdrant/bin on free ports with throw-away
storage (unless QDRANT_URL is set) and target/debug/secondpass
(`cargo build --workspace --bins` first), loads the corpus into a collection through
secondpass, and runs each query twice through secondpass: with reranking turned off by
header (`x-rerank-enabled: false`) and on. The model was fine-tuned on these queries,
so the numbers prove the mechanics, not the model's quality (../shared/eval/README.md).
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration-tests" / "python"))
from support import SHARED, base_config, real_qdrant, start_secondpass  # noqa: E402

EVAL = SHARED / "eval" / "cranfield-train"


def load():
    corpus = [json.loads(l) for l in open(EVAL / "corpus.jsonl")]
    queries = [json.loads(l) for l in open(EVAL / "queries.jsonl")]
    qrels = {}
    with open(EVAL / "qrels.tsv") as f:
        next(f)
        for line in f:
            q, d, g = line.split()
            qrels.setdefault(int(q), {})[int(d)] = int(g)
    return corpus, queries, qrels


def ndcg10(ranked, gains):
    dcg = sum((2 ** gains.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def run(queries_n, pool, model_file, out=sys.stdout):
    """Against QDRANT_URL, else a real Qdrant started for the run (support.real_qdrant)."""
    with real_qdrant() as (upstream, _grpc):
        return run_against(upstream, queries_n, pool, model_file, out)


def run_against(upstream, queries_n, pool, model_file, out=sys.stdout):
    corpus, queries, qrels = load()
    queries = [q for q in queries if q["id"] in qrels][:queries_n]
    procs = []
    # unique: tests sharing one server run this too
    coll = f"cranfield_eval_{os.getpid()}_{time.monotonic_ns()}"
    extra = f'model_file = "{model_file}"\n' if model_file else ""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "secondpass.toml"
        cfg.write_text(base_config(upstream) + extra + f"[collections.{coll}]\nenabled = true\npool = {pool}\n")
        proc, addrs = start_secondpass(cfg)
        procs.append(proc)
        base = f"http://{addrs['rest']}/collections/{coll}"
        try:
            s = requests.Session()
            s.put(base, json={"vectors": {"dense": {"size": 4, "distance": "Cosine"}},
                              "sparse_vectors": {"bm25": {"modifier": "idf"}}}, timeout=30).raise_for_status()
            for i in range(0, len(corpus), 200):
                points = [{"id": d["id"],
                           "vector": {"dense": [1.0, 0.0, 0.0, 0.0],
                                      "bm25": {"text": d["title"] + " " + d["text"], "model": "qdrant/bm25"}},
                           "payload": {"text": d["text"], "title": d["title"]}}
                          for d in corpus[i:i + 200]]
                s.put(f"{base}/points?wait=true", json={"points": points}, timeout=120).raise_for_status()
            scores = {"qdrant": [], "reranked": []}
            started = time.monotonic()
            for q in queries:
                body = {"query": {"text": q["text"], "model": "qdrant/bm25"}, "using": "bm25", "limit": 10}
                for name, headers in [("qdrant", {"x-rerank-enabled": "false"}), ("reranked", {})]:
                    r = s.post(f"{base}/points/query", json=body, headers=headers, timeout=120)
                    r.raise_for_status()
                    ranked = [p["id"] for p in r.json()["result"]["points"]]
                    scores[name].append(ndcg10(ranked, qrels[q["id"]]))
            took = time.monotonic() - started
            s.delete(base, timeout=30)
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)
    result = {k: sum(v) / len(v) for k, v in scores.items()}
    print(f"Cranfield, {len(queries)} queries, pool {pool}, model {model_file or 'model.onnx'}: "
          f"nDCG@10 Qdrant BM25 {result['qdrant']:.3f} -> reranked {result['reranked']:.3f} "
          f"({took:.1f} s for {2 * len(queries)} searches)", file=out)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--pool", type=int, default=50)
    ap.add_argument("--model-file", default=None, help="e.g. model_int8.onnx")
    a = ap.parse_args()
    run(a.queries, a.pool, a.model_file)


if __name__ == "__main__":
    main()
