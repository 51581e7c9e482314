#!/usr/bin/env python3
"""Cranfield quality and rerank latency through secondpass and the real Qdrant, every
configuration in one run, interleaved query by query (the machine is shared: noise
hits every configuration alike).

    bash scripts/qdrant start && source .local/qdrant/env && export QDRANT_URL
    cargo build --bin secondpass          # or --release with --binary target/release/secondpass
    .local/venv/bin/python scripts/bench/quality.py \
        --chunk fit/0/4/blend:0.5 --chunk 96/16/4/decay:1 [--queries held-out] [--out FILE]

First stage: Qdrant's server-side BM25 (sparse vector with modifier idf, Document query
`{"text": ..., "model": "qdrant/bm25"}`). Each configuration is its own collection
(same data) in one secondpass: (a) pool 30, `truncate` vs `chunk` settings given as
TOKENS/OVERLAP/MAX_CHUNKS/AGGREGATE (TOKENS `fit`: what fits beside the query), all at
max_length 128 with the fp32 model; (b) pool 100: fp32 alone, int8 alone, and the
cascade int8 on 100 then fp32 on the best 20 (and 10; `--keep K` for others,
`--cascade LEN/KEEP` for a first stage that reads only LEN tokens, `--int8-len LEN`
for that first stage alone). Latency is the `rerank.time`
secondpass reports (the rerank step alone), after one warm-up query per configuration.
`--queries held-out` (default) uses the queries the chunk aggregates were not tuned on
(odd positions by id, see cranfield.split)."""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration-tests" / "python"))
from cranfield import MODEL_DIR, ROOT, bm25, create, load, ndcg10, split  # noqa: E402
from support import start  # noqa: E402


def chunk_section(name, spec):
    tokens, overlap, most, agg = spec.split("/", 3)
    lines = [f"[collections.{name}]", "enabled = true", "pool = 30", 'long_documents = "chunk"',
             f"chunk_overlap = {overlap}", f"max_chunks_per_doc = {most}", f'chunk_aggregate = "{agg}"']
    if tokens != "fit":
        lines.append(f"chunk_tokens = {tokens}")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunk", action="append", default=[], help="TOKENS/OVERLAP/MAX/AGGREGATE")
    ap.add_argument("--queries", default="held-out", choices=["held-out", "tune", "all"])
    ap.add_argument("--limit", type=int, default=0, help="first N queries only (0: all)")
    ap.add_argument("--binary", default=str(ROOT / "target" / "debug" / "secondpass"))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--deadline", type=float, default=0,
                    help="stop after this many seconds of queries and report the queries done (0: none)")
    ap.add_argument("--keep", type=int, action="append", default=None,
                    help="cascade keep values to measure, first stage int8 at max_length 128 (default: 20 and 10)")
    ap.add_argument("--cascade", action="append", default=[], metavar="LEN/KEEP",
                    help="more cascades: int8 at max_length LEN on 100, then fp32 (128) on the best KEEP")
    ap.add_argument("--int8-len", type=int, action="append", default=[], metavar="LEN",
                    help="also int8 alone on 100 at max_length LEN")
    a = ap.parse_args()
    corpus, queries, qrels = load()
    tune, held = split(queries)
    qs = {"held-out": held, "tune": tune, "all": sorted(queries, key=lambda q: q["id"])}[a.queries]
    if a.limit:
        qs = qs[: a.limit]
    upstream = os.environ["QDRANT_URL"].rstrip("/")
    tag = os.getpid()
    configs = {}  # label -> collection
    sections = []
    if not a.skip_a:
        configs["(a) truncate"] = f"qa_trunc_{tag}"
        sections.append(f"[collections.qa_trunc_{tag}]\nenabled = true\npool = 30\n")
        for i, spec in enumerate(a.chunk):
            configs[f"(a) chunk {spec}"] = f"qa_chunk{i}_{tag}"
            sections.append(chunk_section(f"qa_chunk{i}_{tag}", spec))
    if not a.skip_b:
        rows = [("(b) fp32 on 100", f"qb_fp32_{tag}", 'reranker = "local"'),
                ("(b) int8 on 100", f"qb_int8_{tag}", 'reranker = "fast"')]
        for n in a.int8_len:
            rows.append((f"(b) int8@{n} on 100", f"qb_int8l{n}_{tag}", f'reranker = "fast"\nmax_length = {n}'))
        for k in a.keep or ([] if a.cascade else [20, 10]):
            rows.append((f"(b) int8 100 -> fp32 {k}", f"qb_casc{k}_{tag}",
                         f'stages = [{{ reranker = "fast", keep = {k} }}, {{ reranker = "local" }}]'))
        for spec in a.cascade:
            n, k = (int(x) for x in spec.split("/"))
            rows.append((f"(b) int8@{n} 100 -> fp32 {k}", f"qb_casc{n}_{k}_{tag}",
                         f'stages = [{{ reranker = "fast", keep = {k}, max_length = {n} }}, {{ reranker = "local" }}]'))
        for label, coll, body in rows:
            configs[label] = coll
            sections.append(f"[collections.{coll}]\nenabled = true\npool = 100\n{body}\n")
    runtime = ROOT / ".local/onnxruntime/lib/libonnxruntime.so"
    model = f'model_dir = "{MODEL_DIR}"\nruntime_path = "{runtime}"\nbatch_size = {a.batch_size}\n'
    cfg = f"""
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "http://127.0.0.1:1"
timeout_ms = 300000
[rerankers.local]
kind = "onnx"
{model}max_length = 128
[rerankers.fast]
kind = "onnx"
model_file = "model_int8.onnx"
{model}max_length = 128
[collections.default]
timeout_ms = 300000
""" + "\n".join(sections)
    s = requests.Session()
    for coll in configs.values():
        create(f"{upstream}/collections/{coll}", corpus, s)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "secondpass.toml"
        path.write_text(cfg)
        proc, line = start([a.binary, "serve", "--config", str(path)], "secondpass listening")
        addrs = dict(kv.split("=", 1) for kv in line.split()[2:])
        base = f"http://{addrs['rest']}/collections"
        try:
            labels = list(configs)
            bm = []
            ndcg = {k: [] for k in labels}
            lat = {k: [] for k in labels}
            for k in labels:  # warm-up (model pages, allocations)
                bm25(f"{base}/{configs[k]}", qs[0]["text"], 10, s)
            started = time.monotonic()
            done = 0
            for n, q in enumerate(qs):
                if a.deadline and time.monotonic() - started > a.deadline:
                    print(f"  deadline: stopping after {n} queries", file=sys.stderr, flush=True)
                    break
                first = bm25(f"{base}/{configs[labels[0]]}", q["text"], 10, s, {"x-rerank-enabled": "false"})
                bm.append(ndcg10([p["id"] for p in first["result"]["points"]], qrels[q["id"]]))
                # rotate the order so that no configuration always runs first
                order = labels[n % len(labels):] + labels[: n % len(labels)]
                for k in order:
                    r = bm25(f"{base}/{configs[k]}", q["text"], 10, s)
                    assert r["rerank"]["status"] == "applied", r["rerank"]
                    ndcg[k].append(ndcg10([p["id"] for p in r["result"]["points"]], qrels[q["id"]]))
                    lat[k].append(r["rerank"]["time"])
                done = n + 1
                if n % 5 == 4:
                    print(f"  {n + 1}/{len(qs)} queries, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            took = time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            for coll in configs.values():
                s.delete(f"{upstream}/collections/{coll}", timeout=30)
    bm = bm[:done]
    print(f"Cranfield {a.queries} queries: {done} of {len(qs)}; BM25 (Qdrant) nDCG@10 {statistics.mean(bm):.4f}; "
          f"{took:.0f} s in all; binary {a.binary}")
    print("| configuration | nDCG@10 | rerank ms mean | p50 | p90 |")
    print("|---|---|---|---|---|")
    result = {"queries": a.queries, "n": done, "bm25": statistics.mean(bm), "configs": {}}
    for k in labels:
        ms = sorted(x * 1000 for x in lat[k][:done])
        row = {"ndcg10": statistics.mean(ndcg[k][:done]), "mean_ms": statistics.mean(ms),
               "p50_ms": ms[len(ms) // 2], "p90_ms": ms[int(len(ms) * 0.9)]}
        result["configs"][k] = row
        print(f"| {k} | {row['ndcg10']:.4f} | {row['mean_ms']:.0f} | {row['p50_ms']:.0f} | {row['p90_ms']:.0f} |")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
