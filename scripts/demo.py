#!/usr/bin/env python3
"""The demo's Python half (scripts/demo runs it; standard library only, no venv needed):
loads Cranfield into the Qdrant at QDRANT_URL with server-side BM25, starts secondpass in
front of it with reranking on for that collection, and prints one judged query's top 10
from Qdrant and through secondpass side by side, with nDCG@10 of both. secondpass is left
running; its pid, log and config are in the state directory (`scripts/demo stop` ends it).

    python3 scripts/demo.py --state DIR --bin target/debug/secondpass [--query ID] [--collection NAME]
"""

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "integration-tests" / "python"))
from support import (CRANFIELD, base_config, bm25, create_bm25_collection, cranfield_docs, cranfield_qrels,  # noqa: E402
                     http_json, ndcg, upsert_docs)

POOL = 50
WIDTH = 30  # title characters per column


def load(qdrant, collection, docs):
    with contextlib.suppress(urllib.error.HTTPError):
        http_json("DELETE", f"{qdrant}/collections/{collection}")
    create_bm25_collection(qdrant, collection)
    upsert_docs(qdrant, collection, docs, fields=("title", "text"))


def start_secondpass(binary, state, config_text):
    """secondpass in the background (its own session, so it outlives this script), log in
    the state directory; returns its addresses once it printed its listening line."""
    config = state / "secondpass.toml"
    config.write_text(config_text)
    log_path = state / "secondpass.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(binary), "serve", "--config", str(config)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    (state / "secondpass.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 120  # the model loads before the listeners bind
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("secondpass listening"):
                return dict(kv.split("=", 1) for kv in line.split()[2:])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-3000:]
    sys.exit(f"demo: secondpass did not start (exit code {proc.poll()}); its log {log_path}:\n{tail}")


def shown(path):
    """`path` relative to the repository when inside it (as the README shows it)."""
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def query_body(text):
    return {"query": bm25(text), "using": "bm25", "limit": 10, "with_payload": ["title"]}


def column(hit, grades):
    grade = grades.get(hit["id"])
    title = hit["payload"]["title"].replace("\n", " ")
    if len(title) > WIDTH:
        title = title[:WIDTH - 1] + "…"
    return f"{hit['id']:>5} {grade if grade else '-':>3} {hit['score']:>7.3f}  {title:<{WIDTH}}"


def show(qid, text, grades, plain, reranked, rerank):
    print(f"\nquery {qid}: {text}")
    print(f"({len(grades)} judged documents; rel = judged relevance, 4 = complete answer ... "
          f"1 = minimum interest, - = not judged)\n")
    left, right = "Qdrant: BM25", f"secondpass: BM25 top {POOL}, reranked by the cross-encoder"
    print(f"rank  {left:<{WIDTH + 20}}  {right}")
    head = f"{'id':>5} {'rel':>3} {'score':>7}  {'title':<{WIDTH}}"
    print(f"      {head}  {head}".rstrip())
    for i in range(max(len(plain), len(reranked))):
        a = column(plain[i], grades) if i < len(plain) else " " * (WIDTH + 20)
        b = column(reranked[i], grades) if i < len(reranked) else ""
        print(f"{i + 1:>4}  {a}  {b}".rstrip())
    before = ndcg([h["id"] for h in plain], grades)
    after = ndcg([h["id"] for h in reranked], grades)
    print(f"\nnDCG@10  {before:.3f}{'':<{WIDTH + 14}}{after:.3f}   ({after - before:+.3f})")
    print(f"secondpass: rerank status {rerank.get('status')}, model {rerank.get('model')}, "
          f"{rerank.get('candidates')} candidates scored in {rerank.get('time', 0):.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", required=True, help="directory for pid, log and config")
    ap.add_argument("--bin", required=True, help="the secondpass binary")
    ap.add_argument("--model", required=True, help="the cross-encoder's directory")
    ap.add_argument("--query", type=int, default=None, help="a judged Cranfield query id")
    ap.add_argument("--collection", default="cranfield_demo")
    a = ap.parse_args()
    qdrant, qdrant_grpc = os.environ["QDRANT_URL"].rstrip("/"), os.environ["QDRANT_GRPC_URL"].rstrip("/")
    state = Path(a.state)
    state.mkdir(parents=True, exist_ok=True)

    qrels = cranfield_qrels()
    with open(CRANFIELD / "queries.jsonl") as f:
        queries = {q["id"]: q["text"] for q in map(json.loads, f) if q["id"] in qrels}
    qid = a.query if a.query is not None else DEFAULT_QUERY
    if qid not in queries:
        sys.exit(f"demo: query {qid} is not a judged Cranfield query (try one of {sorted(queries)[:10]}...)")

    t0 = time.monotonic()
    docs = cranfield_docs()
    load(qdrant, a.collection, docs)
    print(f"demo: loaded {len(docs)} Cranfield abstracts into {qdrant}/collections/{a.collection} "
          f"(sparse BM25, computed by Qdrant) in {time.monotonic() - t0:.1f} s")

    # A generous rerank budget (the default is 10 s): on a busy or small machine the first
    # search shows up as latency, not as failed_open.
    config = base_config(qdrant, qdrant_grpc, model=a.model) + f"""
[collections.{a.collection}]
enabled = true
text_field = "text"
pool = {POOL}
timeout_ms = 120000
"""
    addr = start_secondpass(a.bin, state, config)
    proxy = f"http://{addr['rest']}"
    print(f"demo: secondpass at {proxy}, reranking on for {a.collection} (pool {POOL})")

    body = query_body(queries[qid])
    plain = http_json("POST", f"{qdrant}/collections/{a.collection}/points/query", body)["result"]["points"]
    answer = http_json("POST", f"{proxy}/collections/{a.collection}/points/query", body, timeout=300)
    show(qid, queries[qid], qrels[qid], plain, answer["result"]["points"], answer.get("rerank", {}))

    example = json.dumps({**query_body(queries[qid]), "limit": 3})
    print(f"""
Both keep running:
  Qdrant      REST {qdrant}   gRPC {qdrant_grpc}
  secondpass  REST {proxy}   gRPC http://{addr['grpc']}   metrics http://{addr['admin']}/metrics
Point any Qdrant client at secondpass; e.g. the same search with curl:
  curl -s {proxy}/collections/{a.collection}/points/query -H 'content-type: application/json' \\
    -d {shlex.quote(example)}
The model was fine-tuned on these Cranfield queries: this shows the mechanics, not a quality claim
(docs/evaluation.md measures your own queries). secondpass log: {shown(state / 'secondpass.log')}""")


# A query where the difference is easy to see; any judged id works with --query.
DEFAULT_QUERY = 58

if __name__ == "__main__":
    main()
