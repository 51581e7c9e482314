#!/usr/bin/env python3
"""Shared score cache: the hit rate of several secondpass replicas on a replayed query
log, with each replica's own cache only, and with the in-process tier in front of a
shared Redis. Not part of CI.

    cargo build --release --workspace --bins
    .local/venv/bin/python scripts/bench/shared_cache.py [--replicas 3] [--log 300] \\
        [--zipf 1.1] [--seed 7] [--bin target/release/secondpass] [--json out.json]

The query log: --log searches drawn from the Cranfield queries
(../shared/eval/cranfield-train/queries.jsonl) with a Zipf law over their order
(P(rank r) ∝ r^-zipf, seed --seed): a few queries are asked often, most rarely, as in
search logs. It is replayed one search at a time (the hit rates are exact, not timing
luck), round-robin over the replicas as a load balancer would, against a real Qdrant
1.18.3 (QDRANT_URL, else started here) holding the Cranfield corpus with server-side
BM25, each search reranked over a pool of --pool candidates by the shared cross-encoder.
A fresh redis-server (Debian's) per run.

Reported per setup: lookups and hits by tier (from the replicas' /metrics), the share of
candidates served from a cache, the model's pairs scored, search latency p50/p95.
"""

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration-tests" / "python"))
from support import (ROOT, RedisServer, base_config, bm25, cranfield_docs, cranfield_queries,  # noqa: E402
                     create_bm25_collection, metric, real_qdrant, start_secondpass, upsert_docs)

COLLECTION = "bench_shared_cache"


def load(qdrant):
    requests.delete(f"{qdrant}/collections/{COLLECTION}", timeout=30)
    create_bm25_collection(qdrant, COLLECTION)
    upsert_docs(qdrant, COLLECTION, cranfield_docs())


def query_log(n, zipf, seed):
    queries = cranfield_queries()
    rng = random.Random(seed)
    weights = [1 / (r + 1) ** zipf for r in range(len(queries))]
    return rng.choices(queries, weights=weights, k=n)


def run(upstream, binary, args, log, redis):
    """Replays `log` through --replicas processes; Redis shared when `redis` is given."""
    extra = f"\n[cache]\nmax_entries = {args.max_entries}\n"
    if redis:
        extra += f'[cache.redis]\nurl = "{redis.url}"\ntimeout_ms = 50\n'
    extra += f"\n[collections.{COLLECTION}]\nenabled = true\npool = {args.pool}\ntimeout_ms = 60000\n"
    replicas = []
    try:
        for _ in range(args.replicas):
            config = Path(tempfile.mkdtemp(prefix="secondpass-bench-cache-")) / "secondpass.toml"
            config.write_text(base_config(*upstream) + extra)
            proc, addrs = start_secondpass(config, binary)
            replicas.append((proc, f"http://{addrs['rest']}", f"http://{addrs['admin']}"))
        session = requests.Session()
        took = []
        for i, text in enumerate(log):
            _, rest, _ = replicas[i % len(replicas)]
            body = {"query": bm25(text), "using": "bm25", "limit": 10}
            started = time.monotonic()
            r = session.post(f"{rest}/collections/{COLLECTION}/points/query", json=body, timeout=120)
            took.append(time.monotonic() - started)
            assert r.status_code == 200 and r.headers["x-rerank-status"] == "applied", r.text[:300]
            if redis:
                time.sleep(0.01)  # the writes of this batch land before the next search
        texts = [requests.get(f"{admin}/metrics", timeout=10).text for _, _, admin in replicas]
    finally:
        for proc, _, _ in replicas:
            proc.terminate()
            proc.wait(timeout=30)

    def total(name, **labels):
        return int(sum(metric(t, name, **labels) for t in texts))

    lookups = len(log) * args.pool
    hits = {tier: total("secondpass_cache_lookups_total", tier=tier, result="hit") for tier in ("memory", "redis")}
    took.sort()
    return {
        "setup": f"{args.replicas} replicas, " + ("memory + shared Redis" if redis else "own memory cache each"),
        "searches": len(log), "candidates": lookups,
        "memory_hits": hits["memory"], "redis_hits": hits["redis"],
        "redis_misses": total("secondpass_cache_lookups_total", tier="redis", result="miss"),
        "hit_rate": round((hits["memory"] + hits["redis"]) / lookups, 3),
        "pairs_scored": total("secondpass_pairs_scored_total"),
        "redis_errors": total("secondpass_cache_redis_errors_total"),
        "p50_ms": round(statistics.median(took) * 1e3, 1),
        "p95_ms": round(took[int(0.95 * (len(took) - 1))] * 1e3, 1),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--log", type=int, default=300, help="searches in the replayed log")
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--pool", type=int, default=10)
    p.add_argument("--max-entries", type=int, default=100_000)
    p.add_argument("--bin", default=str(ROOT / "target" / "release" / "secondpass"))
    p.add_argument("--json")
    args = p.parse_args()
    log = query_log(args.log, args.zipf, args.seed)
    print(f"query log: {len(log)} searches, {len(set(log))} distinct queries "
          f"(Zipf {args.zipf} over {len(cranfield_queries())} Cranfield queries, seed {args.seed})")
    results = []
    with real_qdrant() as upstream:
        load(upstream[0])
        results.append(run(upstream, args.bin, args, log, None))
        print(json.dumps(results[-1]))
        redis = RedisServer().start()
        try:
            results.append(run(upstream, args.bin, args, log, redis))
            print(json.dumps(results[-1]))
        finally:
            redis.close()
    print("\n| setup | candidates | memory hits | Redis hits | hit rate | pairs scored | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['setup']} | {r['candidates']} | {r['memory_hits']} | {r['redis_hits']} | {r['hit_rate']:.1%} "
              f"| {r['pairs_scored']} | {r['p50_ms']} | {r['p95_ms']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "distinct": len(set(log)),
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
