#!/usr/bin/env python3
"""Cranfield through `secondpass eval`: loads the shared Cranfield collection into a
real Qdrant with server-side BM25, writes the queries (JSONL with the Query API body
to run) and the qrels (TREC format) for it, and runs `secondpass eval` on them.

    .local/venv/bin/python scripts/eval.py [--queries 30] [--pools 10,20,30,50] [--json] [--report r.html]

It uses the Qdrant at QDRANT_URL, else starts the real Qdrant 1.18.3 from
../shared/qdrant/bin for the run. Everything about the evaluation (metrics, the paired test, latency, the table) is
`secondpass eval`'s; this script only prepares Cranfield for it. The model was
fine-tuned on these 150 queries, so the numbers prove the mechanics, not the model's
quality (../shared/eval/README.md).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "integration-tests" / "python"))
from support import (SHARED, TARGET, base_config, create_bm25_collection, cranfield_docs, cranfield_qrels,  # noqa: E402
                     http_json, real_qdrant, upsert_docs)

EVAL = SHARED / "eval" / "cranfield-train"


def bm25_search(text):
    """The Query API body of one Cranfield query: server-side BM25 on the sparse vector."""
    return {"query": {"text": text, "model": "qdrant/bm25"}, "using": "bm25"}


def load_collection(qdrant, name):
    """(Re)creates `name` with the Cranfield corpus: payload `text` and `title`, sparse BM25 (idf)."""
    with contextlib.suppress(urllib.error.HTTPError):
        http_json("DELETE", f"{qdrant}/collections/{name}")
    create_bm25_collection(qdrant, name)
    upsert_docs(qdrant, name, cranfield_docs(), fields=("text", "title"))


def write_inputs(directory, n_queries):
    """queries.jsonl and qrels.txt for the first `n_queries` judged queries."""
    qrels = cranfield_qrels()
    queries = [json.loads(line) for line in open(EVAL / "queries.jsonl")]
    queries = [q for q in queries if q["id"] in qrels][:n_queries]
    qpath, rpath = Path(directory) / "queries.jsonl", Path(directory) / "qrels.txt"
    with open(qpath, "w") as out:
        for q in queries:
            out.write(json.dumps({"id": q["id"], "text": q["text"], "search": bm25_search(q["text"])}) + "\n")
    with open(rpath, "w") as out:
        for q in queries:
            for d, g in qrels[q["id"]].items():
                out.write(f"{q['id']} 0 {d} {g}\n")
    return qpath, rpath, queries


def run_eval(config, collection, qpath, rpath, extra=(), check=True):
    cmd = [str(TARGET / "secondpass"), "eval", "--config", str(config), "--collection", collection,
           "--queries", str(qpath), "--qrels", str(rpath), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"secondpass eval exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--pools", default="10,20,30,50")
    ap.add_argument("--k", default="10")
    ap.add_argument("--model-file", default=None, help="e.g. model_int8.onnx")
    ap.add_argument("--collection", default="cranfield")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--report", default=None, help="HTML report file")
    ap.add_argument("--keep-files", default=None, help="directory to keep queries.jsonl, qrels.txt, config")
    a = ap.parse_args()
    # QDRANT_URL when set, else the real Qdrant 1.18.3 started for this run
    with real_qdrant() as (qdrant, _grpc):
        sys.exit(evaluate(a, qdrant))


def evaluate(a, qdrant):
    load_collection(qdrant, a.collection)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(a.keep_files or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        qpath, rpath, _ = write_inputs(directory, a.queries)
        config = directory / "secondpass.toml"
        extra_model = f'model_file = "{a.model_file}"\n' if a.model_file else ""
        config.write_text(base_config(qdrant) + extra_model)
        extra = ["--pools", a.pools, "--k", a.k] + (["--json"] if a.json else [])
        extra += ["--report", a.report] if a.report else []
        proc = subprocess.run([str(TARGET / "secondpass"), "eval", "--config", str(config),
                               "--collection", a.collection, "--queries", str(qpath),
                               "--qrels", str(rpath), *extra])
        return proc.returncode


if __name__ == "__main__":
    main()
