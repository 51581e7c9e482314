"""The score cache shared through Redis: two secondpass processes in front of a real
Qdrant with a real redis-server (Debian's, installed by `scripts/setup --redis`).

- scores one replica computed are hits for the other (its model is not asked again),
  and Redis holds digests and numbers only, no text;
- Redis killed (SIGKILL) or hung (SIGSTOP) while both replicas serve reranked searches:
  every search is still answered, reranked, within its budget; the errors show in the
  metrics and (rate-limited) in the log;
- Redis back: the replicas reconnect by themselves and share hits again.

The in-process tier is off here (`max_entries = 0`), so that every hit is Redis's.
"""

import concurrent.futures
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

from support import (RedisServer, base_config, bm25, cranfield_docs, cranfield_queries,
                     create_bm25_collection, metric, real_qdrant, require_qdrant, require_tool,
                     start_secondpass, upsert_docs, wait_for)

COLLECTION = f"shared_cache_{os.getpid()}"
POOL = 8
# The rerank budget: generous, so that a slow, shared CI machine never fails a search
# open for want of CPU (what is asserted about Redis is its own round trips).
BUDGET_MS = 20000
# One Redis round trip at most (secondpass's [cache.redis] timeout_ms) ...
REDIS_TIMEOUT_MS = 100
# ... and how long Redis is left alone after a failure.
RETRY_MS = 300


@pytest.fixture(scope="module")
def upstream():
    require_qdrant()
    with real_qdrant() as urls:
        create_bm25_collection(urls[0], COLLECTION)
        upsert_docs(urls[0], COLLECTION, cranfield_docs(300))
        yield urls
        requests.delete(f"{urls[0]}/collections/{COLLECTION}", timeout=30)


@pytest.fixture(scope="module")
def redis():
    binary = require_tool("redis-server", "--redis")
    require_tool("redis-cli", "--redis")
    server = RedisServer(binary).start()
    yield server
    server.close()


class Replica:
    """One secondpass process sharing `redis`; its log goes to a file."""

    def __init__(self, upstream, redis):
        self.dir = Path(tempfile.mkdtemp(prefix="secondpass-py-replica-"))
        config = self.dir / "secondpass.toml"
        config.write_text(base_config(*upstream) + f"""
[cache]
max_entries = 0
[cache.redis]
url = "{redis.url}"
key_prefix = "it:"
timeout_ms = {REDIS_TIMEOUT_MS}
retry_ms = {RETRY_MS}
[collections.{COLLECTION}]
enabled = true
pool = {POOL}
timeout_ms = {BUDGET_MS}
""")
        self.proc, addrs = start_secondpass(config)
        self.rest = f"http://{addrs['rest']}"
        self.admin = f"http://{addrs['admin']}"
        self.http = requests.Session()

    def search(self, text, timeout=30):
        """(status, x-rerank-status, ids, seconds) of a reranked BM25 search of `text`."""
        body = {"query": bm25(text), "using": "bm25", "limit": 5}
        started = time.monotonic()
        r = self.http.post(f"{self.rest}/collections/{COLLECTION}/points/query", json=body,
                           timeout=timeout)
        took = time.monotonic() - started
        ids = [p["id"] for p in r.json()["result"]["points"]] if r.ok else []
        status = r.headers.get("x-rerank-status")
        if status != "applied":
            status = f"{status}: {r.headers.get('x-rerank-reason')} {r.json().get('rerank') if r.ok else r.text[:300]}"
        return r.status_code, status, ids, took

    def metrics(self):
        return requests.get(f"{self.admin}/metrics", timeout=10).text

    def pairs_scored(self):
        return metric(self.metrics(), "secondpass_pairs_scored_total")

    def redis_lookups(self, result):
        return metric(self.metrics(), "secondpass_cache_lookups_total", tier="redis", result=result)

    def close(self):
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out


@pytest.fixture(scope="module")
def replicas(upstream, redis):
    pair = [Replica(upstream, redis), Replica(upstream, redis)]
    yield pair
    for r in pair:
        r.close()


def keys(redis):
    return [k for k in redis.cli("--scan", "--pattern", "it:*").splitlines() if k]


def test_one_replicas_scores_are_the_others_hits(replicas, redis):
    a, b = replicas
    texts = cranfield_queries(4)
    first = [a.search(t) for t in texts]
    assert all(s == 200 and r == "applied" for s, r, _, _ in first), first
    # Written in the background: one key per (query, candidate).
    wait_for("the scores in Redis", lambda: len(keys(redis)) >= len(texts) * POOL)
    scored, hits = b.pairs_scored(), b.redis_lookups("hit")
    second = [b.search(t) for t in texts]
    assert [ids for _, _, ids, _ in second] == [ids for _, _, ids, _ in first]
    assert all(r == "applied" for _, r, _, _ in second), second
    assert b.pairs_scored() == scored, "b reranked from a's scores without the model"
    assert b.redis_lookups("hit") - hits == len(texts) * POOL

    # Digests and numbers only: no query or document text in Redis.
    names = keys(redis)
    assert all(re.fullmatch(r"it:[0-9a-f]{64}", k) for k in names), names[:3]
    values = [redis.cli("GET", k) for k in names[:20]]
    assert all(float(v) == float(v) for v in values), values
    ttl = int(redis.cli("PTTL", names[0]))
    assert 0 < ttl <= 3_600_000, ttl


def test_redis_down_or_hung_never_holds_a_search_and_the_replicas_recover(replicas, redis):
    a, b = replicas
    texts = cranfield_queries(24)
    errors_before = [metric(r.metrics(), "secondpass_cache_redis_errors_total") for r in replicas]
    results = []

    def load(phase, n):
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit((a, b)[i % 2].search, texts[i % len(texts)]) for i in range(n)]
            results.extend((phase, *j.result()) for j in jobs)

    load("up", 6)
    redis.kill()
    load("killed", 6)
    redis.start()  # empty, same port
    redis.pause()
    load("hung", 6)
    redis.resume()

    budget = BUDGET_MS / 1000
    for phase, status, rerank, ids, took in results:
        assert status == 200 and rerank == "applied" and ids, (phase, status, rerank)
        assert took < budget, f"{phase}: a search took {took:.2f}s (budget {budget}s)"
    for r, before in zip(replicas, errors_before):
        text = r.metrics()
        assert metric(text, "secondpass_cache_redis_errors_total") > before, "errors are counted"
        print("\n".join(line for line in text.splitlines()
                        if line.startswith(("secondpass_cache_redis_errors_total", "secondpass_cache_lookups_total"))))
        # No round trip to Redis outlived its timeout by much, whatever Redis did.
        total = metric(text, "secondpass_cache_redis_duration_seconds_count")
        quick = metric(text, "secondpass_cache_redis_duration_seconds_bucket", le="0.25")
        assert quick == total, f"{total - quick} Redis round trips took more than 250 ms"

    # Back: both replicas reconnect by themselves and share scores again.
    fresh = cranfield_queries(30)[-1]
    wait_for("a to write to Redis again",
             lambda: a.search(fresh)[1] == "applied" and len(keys(redis)) >= POOL, timeout=20)
    hits = b.redis_lookups("hit")
    wait_for("b to read a's scores", lambda: b.search(fresh) and b.redis_lookups("hit") >= hits + POOL,
             timeout=20)

    # One warning per failure burst, not one per search.
    logs = a.close() + b.close()
    replicas[:] = []
    warned = logs.count("shared score cache (Redis) failed")
    assert 1 <= warned <= 8, f"{warned} warnings about Redis"
    assert "shared score cache (Redis) answers again" in logs
