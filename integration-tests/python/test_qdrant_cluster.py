"""secondpass in front of a real Qdrant cluster: three nodes of the shared binary on
loopback in distributed mode (`scripts/qdrant cluster start 3`), secondpass pointed at
node 1 as it would be at a load-balanced Service.

- Cranfield in 3 shards with replication factor 2: reranked searches (REST and gRPC,
  with `consistency` / `read_consistency`) equal the model's order of the same candidates;
  the cluster endpoints answer as they do without secondpass;
- custom sharding: shard keys in upserts, queries (reranked), count and scroll;
- `x-qdrant-route-affinity` (Qdrant 1.19) reaches Qdrant unchanged: with two replicas
  made to differ, each routing token reads the replica it reads without secondpass;
- one node killed with SIGKILL and restarted during writes and reranked searches: no
  acknowledged write lost, no request past its deadline; the figures are printed
  (`pytest -s`; BENCHMARKS.md "Cluster").

The cluster runs Qdrant 1.19.0 (the routing header is new in 1.19);
SECONDPASS_CLUSTER_QDRANT_VERSION=1.18.3 runs everything else against 1.18.3.
"""

import json
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
from qdrant_client import QdrantClient, models
from qdrant_client.context_headers import headers as call_headers

from support import (ROOT, base_config, bm25, cranfield_docs, cranfield_queries, create_bm25_collection,
                     model_scores, start_secondpass, upsert_docs, wait_for)

VERSION = os.environ.get("SECONDPASS_CLUSTER_QDRANT_VERSION", "1.19.0")
POOL = 20
LOAD_POOL = 5
ROUTE = "x-qdrant-route-affinity"


class Cluster:
    """`scripts/qdrant cluster` with its state in a directory of its own."""

    def __init__(self, size):
        self.dir = tempfile.mkdtemp(prefix="secondpass-py-cluster-")
        self.env = dict(os.environ, SECONDPASS_QDRANT_CLUSTER_DIR=self.dir)
        out = self.run("cluster", "start", str(size))
        urls = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        self.urls = urls["QDRANT_CLUSTER_URLS"].split(",")
        self.grpc_urls = urls["QDRANT_CLUSTER_GRPC_URLS"].split(",")

    def run(self, *args):
        p = subprocess.run(["bash", str(ROOT / "scripts" / "qdrant"), "--version", VERSION, *args],
                           env=self.env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"scripts/qdrant {' '.join(args)}: {p.stderr[-3000:]}"
        return p.stdout

    def kill(self, node):
        self.run("cluster", "kill", str(node))

    def restart(self, node):
        self.run("cluster", "restart", str(node))

    def stop(self):
        self.run("cluster", "stop")


def require_binary():
    p = subprocess.run(["bash", str(ROOT / "scripts" / "qdrant"), "--version", VERSION, "path"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        if "no Qdrant binary" in p.stderr and os.environ.get("CI", "") in ("", "false"):
            pytest.skip(p.stderr.strip())
        pytest.fail(p.stderr.strip())


@pytest.fixture(scope="module")
def cluster():
    require_binary()
    c = Cluster(3)
    yield c
    c.stop()


def all_replicas_active(cluster, collection):
    """Every node sees every replica of `collection` Active."""
    for url in cluster.urls:
        try:
            r = requests.get(f"{url}/collections/{collection}/cluster", timeout=5).json()["result"]
        except (requests.RequestException, KeyError, ValueError):
            return False
        shards = r["local_shards"] + r["remote_shards"]
        if not shards or any(s["state"] != "Active" for s in shards):
            return False
    return True


@pytest.fixture(scope="module")
def cranfield(cluster):
    create_bm25_collection(cluster.urls[0], "cranfield", shard_number=3, replication_factor=2)
    upsert_docs(cluster.urls[0], "cranfield", cranfield_docs(600))
    wait_for("cranfield's replicas", lambda: all_replicas_active(cluster, "cranfield"), 60)
    return "cranfield"


@pytest.fixture(scope="module")
def proxy(cluster):
    """secondpass (the built binary) in front of node 1."""
    config = Path(tempfile.mkdtemp(prefix="secondpass-py-cluster-proxy-")) / "secondpass.toml"
    sections = "".join(f"\n[collections.{c}]\nenabled = true\npool = {POOL}\ntimeout_ms = 20000\n"
                       for c in ("cranfield", "tenants", "affinity"))
    # Under load: a small pool, and every answer bounded (Qdrant's 10 s + the model's 5 s).
    sections += f"\n[collections.load]\nenabled = true\npool = {LOAD_POOL}\ntimeout_ms = 5000\n"
    base = base_config(cluster.urls[0], cluster.grpc_urls[0])
    config.write_text(base.replace("[upstream]\n", "[upstream]\ntimeout_ms = 10000\n") + sections)
    proc, addrs = start_secondpass(config)
    yield {"rest": f"http://{addrs['rest']}", "grpc": addrs["grpc"]}
    proc.terminate()
    proc.wait(timeout=30)


def query(url, collection, text, limit, params="", headers=None, **body):
    r = requests.post(f"{url}/collections/{collection}/points/query{params}",
                      json={"query": bm25(text), "using": "bm25", "limit": limit,
                            "with_payload": True, **body},
                      headers=headers or {}, timeout=60)
    return r


def model_order(points, text, k):
    """The model's top `k` of `points`: (id, sigmoid score)."""
    scores = model_scores(text, [p["payload"]["text"] for p in points])
    ranked = sorted(zip(points, scores), key=lambda ps: -ps[1])
    return [(p["id"], s) for p, s in ranked[:k]]


def assert_same(hits, expected):
    assert [h["id"] for h in hits] == [i for i, _ in expected]
    for h, (_, s) in zip(hits, expected):
        assert abs(h["score"] - s) < 1e-4, (h["id"], h["score"], s)


def candidates(cluster, collection, text, params=""):
    """Qdrant's own candidates for a reranked search of `text` (limit = the pool, as
    secondpass asks: a sharded search's answer depends on its limit), or None when a tie
    at the pool's edge leaves them open."""
    edge = query(cluster.urls[0], collection, text, POOL + 1, params).json()["result"]["points"]
    if edge[POOL - 1]["score"] == edge[POOL]["score"]:
        return None
    return query(cluster.urls[0], collection, text, POOL, params).json()["result"]["points"]


CONSISTENCY = {"": None, "?consistency=all": models.ReadConsistencyType.ALL,
               "?consistency=majority": models.ReadConsistencyType.MAJORITY}


def test_sharded_searches_rerank_like_the_model(cluster, cranfield, proxy):
    compared, differ = 0, 0
    for text in cranfield_queries(4):
        seen = []
        for params in CONSISTENCY:
            direct = candidates(cluster, cranfield, text, params)
            if direct is None:
                continue
            seen.append({p["id"] for p in direct})
            r = query(proxy["rest"], cranfield, text, 10, params)
            assert r.status_code == 200 and r.headers["x-rerank-status"] == "applied", r.text
            assert_same(r.json()["result"]["points"], model_order(direct, text, 10))
            compared += 1
        differ += len(seen) > 1 and any(s != seen[0] for s in seen)
    assert compared >= 6, f"only {compared} searches without a tie at the pool's edge"
    # Qdrant answers `consistency=all` from every replica, with other BM25 statistics:
    # other candidates, which secondpass reranked as Qdrant gave them, so it passed it on.
    assert differ, "consistency changed no candidate set: the test shows nothing"

    # gRPC, with read_consistency, through the official client (cloud_inference: the
    # Document goes to Qdrant, which makes the BM25 vector).
    port = int(proxy["grpc"].rsplit(":", 1)[1])
    client = QdrantClient(host="127.0.0.1", grpc_port=port, prefer_grpc=True, timeout=60,
                          cloud_inference=True, check_compatibility=False)
    text = cranfield_queries(1)[0]
    for params, consistency in CONSISTENCY.items():
        direct = candidates(cluster, cranfield, text, params)
        if direct is None:
            continue
        hits = client.query_points(cranfield, query=models.Document(**bm25(text)), using="bm25",
                                   limit=5, with_payload=True, consistency=consistency).points
        assert_same([{"id": h.id, "score": h.score} for h in hits], model_order(direct, text, 5))

    # A consistency Qdrant refuses: its own answer, unchanged.
    bad = query(proxy["rest"], cranfield, text, 10, "?consistency=most")
    own = query(cluster.urls[0], cranfield, text, 10, "?consistency=most")
    assert bad.status_code == own.status_code == 400
    assert bad.json()["status"] == own.json()["status"]


def test_cluster_endpoints_answer_as_qdrant_does(cluster, cranfield, proxy):
    def stable(body):
        r = body["result"]
        r.pop("consensus_thread_status", None)
        r.pop("raft_info", None)
        r.pop("message_send_failures", None)
        return r

    direct = requests.get(f"{cluster.urls[0]}/cluster", timeout=10).json()
    through = requests.get(f"{proxy['rest']}/cluster", timeout=10).json()
    assert stable(through) == stable(direct)
    assert len(direct["result"]["peers"]) == 3
    direct = requests.get(f"{cluster.urls[0]}/collections/{cranfield}/cluster", timeout=10).json()
    through = requests.get(f"{proxy['rest']}/collections/{cranfield}/cluster", timeout=10).json()
    assert through["result"] == direct["result"]
    assert direct["result"]["shard_count"] == 3


def test_custom_shard_keys_through_secondpass(cluster, proxy):
    url = proxy["rest"]
    create_bm25_collection(url, "tenants", sharding_method="custom", replication_factor=2)
    for key in ("acme", "globex"):
        requests.put(f"{url}/collections/tenants/shards", json={"shard_key": key}, timeout=60
                     ).raise_for_status()
    docs = cranfield_docs(200)
    upsert_docs(url, "tenants", docs[:100], shard_key="acme")
    upsert_docs(url, "tenants", docs[100:], shard_key="globex")
    wait_for("the tenants' replicas", lambda: all_replicas_active(cluster, "tenants"), 60)
    acme = {d["id"] for d in docs[:100]}

    text = cranfield_queries(3)[2]
    direct = query(cluster.urls[0], "tenants", text, POOL, shard_key="acme").json()["result"]["points"]
    assert direct and {p["id"] for p in direct} <= acme
    r = query(url, "tenants", text, 5, shard_key="acme")
    assert r.status_code == 200 and r.headers["x-rerank-status"] == "applied", r.text
    assert_same(r.json()["result"]["points"], model_order(direct, text, 5))

    for path, body in (("count", {"shard_key": "acme", "exact": True}),
                       ("count", {"shard_key": ["acme", "globex"], "exact": True}),
                       ("scroll", {"shard_key": "globex", "limit": 7, "with_payload": False})):
        through = requests.post(f"{url}/collections/tenants/points/{path}", json=body, timeout=30)
        own = requests.post(f"{cluster.urls[0]}/collections/tenants/points/{path}", json=body,
                            timeout=30)
        assert through.status_code == own.status_code == 200
        assert through.json()["result"] == own.json()["result"], path
    count = requests.post(f"{url}/collections/tenants/points/count",
                          json={"shard_key": "acme", "exact": True}, timeout=30).json()
    assert count["result"]["count"] == 100


def hosts_of_shard0(cluster, collection):
    hosts = []
    for url in cluster.urls:
        r = requests.get(f"{url}/collections/{collection}/cluster", timeout=10).json()["result"]
        if any(s["shard_id"] == 0 for s in r["local_shards"]):
            hosts.append(url)
    return hosts


def marker(url, headers=None):
    r = requests.post(f"{url}/collections/affinity/points", json={"ids": [1], "with_payload": True},
                      headers=headers or {}, timeout=10)
    r.raise_for_status()
    return r.json()["result"][0]["payload"]["text"]


@pytest.mark.skipif(VERSION < "1.19", reason="x-qdrant-route-affinity is new in Qdrant 1.19")
def test_route_affinity_reaches_the_replica_it_names(cluster):
    # Two replicas of one shard made to differ, as Qdrant's own test of the header does:
    # snapshot "A", write "B" to both, recover "A" on one replica only (no_sync).
    first = cluster.urls[0]
    create_bm25_collection(first, "affinity", shard_number=1, replication_factor=2,
                           write_consistency_factor=2, read_fan_out_factor=0)
    wait_for("the affinity replicas", lambda: all_replicas_active(cluster, "affinity"), 60)

    def write(text):
        requests.put(f"{first}/collections/affinity/points?wait=true&ordering=strong",
                     json={"points": [{"id": 1, "vector": {"bm25": bm25(text)},
                                       "payload": {"text": text}}]}, timeout=30).raise_for_status()

    write("marker A about wings")
    hosts = hosts_of_shard0(cluster, "affinity")
    assert len(hosts) == 2, hosts
    coordinator = next(u for u in cluster.urls if u not in hosts)
    snap = requests.post(f"{hosts[0]}/collections/affinity/snapshots?wait=true", timeout=60).json()
    write("marker B about wings")
    requests.put(f"{hosts[0]}/collections/affinity/snapshots/recover",
                 json={"location": f"{hosts[0]}/collections/affinity/snapshots/{snap['result']['name']}",
                       "priority": "no_sync"}, timeout=120).raise_for_status()
    wait_for("the replicas to differ",
             lambda: marker(hosts[0]).startswith("marker A") and marker(hosts[1]).startswith("marker B"), 60)
    tokens = [f"user-{i}" for i in range(24)]
    wait_for("routing to settle", lambda: all(
        len({marker(u, {ROUTE: t}) for u in cluster.urls}) == 1 for t in tokens[:4]), 60)

    # secondpass in front of the node that holds no replica: it must route every read.
    config = Path(tempfile.mkdtemp(prefix="secondpass-py-affinity-")) / "secondpass.toml"
    grpc = cluster.grpc_urls[cluster.urls.index(coordinator)]
    config.write_text(base_config(coordinator, grpc) +
                      f"\n[collections.affinity]\nenabled = true\npool = {POOL}\n")
    proc, addrs = start_secondpass(config)
    try:
        proxy = f"http://{addrs['rest']}"
        seen = set()
        for t in tokens:
            want = marker(coordinator, {ROUTE: t})
            seen.add(want[:8])
            assert marker(proxy, {ROUTE: t}) == want, t  # forwarded as it is
            r = query(proxy, "affinity", "wings", 1, headers={ROUTE: t})
            assert r.headers["x-rerank-status"] == "applied", r.text
            assert r.json()["result"]["points"][0]["payload"]["text"] == want, t
        assert seen == {"marker A", "marker B"}, "the tokens must reach both replicas"
        # gRPC: the routing token as call metadata, on a reranked query.
        client = QdrantClient(host="127.0.0.1", grpc_port=int(addrs["grpc"].rsplit(":", 1)[1]),
                              prefer_grpc=True, timeout=60, cloud_inference=True,
                              check_compatibility=False)
        for t in tokens[:8]:
            with call_headers({ROUTE: t}):
                hit = client.query_points("affinity", query=models.Document(**bm25("wings")),
                                          using="bm25", limit=1, with_payload=True).points[0]
            assert hit.payload["text"] == marker(coordinator, {ROUTE: t}), t
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def test_a_node_killed_under_load_loses_no_acknowledged_write(cluster, proxy, capsys):
    url = proxy["rest"]
    create_bm25_collection(cluster.urls[0], "load", shard_number=3, replication_factor=2)
    upsert_docs(cluster.urls[0], "load", cranfield_docs(300))
    wait_for("the load replicas", lambda: all_replicas_active(cluster, "load"), 60)
    texts = cranfield_queries(20)
    extra = cranfield_docs()[300:]
    # Seconds a client waits for any answer: above secondpass's own bounds (Qdrant 10 s,
    # the rerank step 5 s), so that only a request secondpass failed to bound is late.
    deadline = 20.0
    stop = threading.Event()
    lock = threading.Lock()
    phase = ["before"]
    errors, late, acked = Counter(), [], []
    took = {"search": [], "write": []}
    done = Counter()
    next_id = iter(range(100_000, 10**9))

    def record(kind, started, error=None):
        t = time.monotonic() - started
        with lock:
            took[kind].append(t)
            done[(kind, phase[0], "error" if error else "ok")] += 1
            if error:
                errors[f"{kind}: {error}"] += 1
            if t > deadline:
                late.append((kind, t))

    def searcher(n):
        i = n
        while not stop.is_set():
            started = time.monotonic()
            try:
                r = query(url, "load", texts[i % len(texts)], 3)
                status = r.headers.get("x-rerank-status")
                error = None if r.status_code == 200 and status == "applied" else f"{r.status_code} {status}"
            except requests.RequestException as e:
                error = type(e).__name__
            record("search", started, error)
            i += 2

    def writer():
        s = requests.Session()
        while not stop.is_set():
            with lock:
                pid = next(next_id)
            doc = extra[pid % len(extra)]
            body = {"points": [{"id": pid, "vector": {"bm25": bm25(doc["text"])},
                                "payload": {"text": doc["text"]}}]}
            started = time.monotonic()
            try:
                r = s.put(f"{url}/collections/load/points?wait=true", json=body, timeout=deadline)
                ok = r.status_code == 200 and r.json()["result"]["status"] == "completed"
                error = None if ok else str(r.status_code)
            except requests.RequestException as e:
                ok, error = False, type(e).__name__
            record("write", started, error)
            if ok:
                with lock:
                    acked.append(pid)
            time.sleep(0.02)  # a steady stream, not a flood that starves the searches

    threads = [threading.Thread(target=searcher, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(5)
        killed_at = time.monotonic()
        phase[0] = "down"
        cluster.kill(3)
        time.sleep(8)
        phase[0] = "restarting"
        cluster.restart(3)
        restarted_in = time.monotonic() - killed_at
        phase[0] = "after"
        time.sleep(5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    started = time.monotonic()
    wait_for("every replica to be Active again", lambda: all_replicas_active(cluster, "load"), 120)
    recovered_in = time.monotonic() - started

    found = requests.post(f"{url}/collections/load/points?consistency=all",
                          json={"ids": acked, "with_payload": False}, timeout=120)
    assert found.status_code == 200, found.text
    found_ids = {p["id"] for p in found.json()["result"]}
    after = query(url, "load", texts[0], 3)
    figures = {
        "qdrant": VERSION,
        "searches": len(took["search"]), "writes": len(took["write"]),
        "by_phase": {f"{k} {p} {o}": n for (k, p, o), n in sorted(done.items())},
        "errors": dict(errors),
        "search_p50_ms": round(percentile(took["search"], 50) * 1e3),
        "search_p99_ms": round(percentile(took["search"], 99) * 1e3),
        "search_max_ms": round(max(took["search"]) * 1e3),
        "write_p50_ms": round(percentile(took["write"], 50) * 1e3),
        "write_p99_ms": round(percentile(took["write"], 99) * 1e3),
        "write_max_ms": round(max(took["write"]) * 1e3),
        "writes_acknowledged": len(acked), "acknowledged_found": len(found_ids & set(acked)),
        "node_down_s": round(restarted_in, 1), "replicas_active_after_s": round(recovered_in, 1),
    }
    with capsys.disabled():  # shown in scripts/test's output, passed or not
        print("\ncluster node-kill figures:", json.dumps(figures))
    assert not late, f"answers past the {deadline}s deadline: {late}"
    assert set(acked) <= found_ids, f"acknowledged writes lost: {sorted(set(acked) - found_ids)[:10]}"
    for kind in ("search", "write"):
        assert done[(kind, "down", "ok")] > 0, f"no {kind} succeeded while node 3 was down: {figures}"
    assert after.status_code == 200 and after.headers["x-rerank-status"] == "applied"
