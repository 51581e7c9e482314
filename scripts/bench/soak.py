#!/usr/bin/env python3
"""Soak: N minutes of mixed REST and gRPC traffic through secondpass to a real Qdrant
1.18.3, with an upstream restart in the middle (SIGTERM, then started again on the same
ports and storage). Not part of CI.

    cargo build --release --workspace --bins
    .local/venv/bin/python scripts/bench/soak.py [--minutes 10] [--concurrency 8] \\
        [--bin target/release/secondpass] [--json target/bench/soak.json]

Traffic: searches and queries on a collection with reranking off and on (a small share
with query text, really reranked over a pool of 8), upserts, and requests Qdrant rejects
(bad dimension, missing collection, invalid JSON, gRPC formula queries that fail with
INVALID_ARGUMENT). Every answer is checked against the status (gRPC code) Qdrant gives
that request; anything else is an error, counted by kind and split into those inside the
restart window (from SIGTERM until Qdrant is ready again plus --grace seconds) and those
outside it. secondpass's RSS is read from /proc every --sample seconds. REST calls are
the compressed case: `requests` sends `Accept-Encoding: gzip, deflate` by default, as the
official Python client does.

Exits 1 when an error happens outside the restart window or secondpass dies.
"""

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import requests
from qdrant_client import grpc as qg

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration-tests" / "python"))
from support import ROOT, QdrantServer, base_config, start_secondpass  # noqa: E402

POOL = 8
WORDS = "wing flutter boundary layer shock heat supersonic panel buckling jet noise laminar".split()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def vec(rng):
    return [rng.uniform(-1, 1) for _ in range(4)]


def seed(url, coll, points):
    s = requests.Session()
    s.delete(f"{url}/collections/{coll}", timeout=30)
    s.put(f"{url}/collections/{coll}", json={"vectors": {"size": 4, "distance": "Cosine"}},
          timeout=30).raise_for_status()
    rng = random.Random(7)
    if points:
        pts = [{"id": i, "vector": vec(rng), "payload": {"text": " ".join(rng.choices(WORDS, k=6)), "a": i % 10}}
               for i in range(1, points + 1)]
        s.put(f"{url}/collections/{coll}/points?wait=true", json={"points": pts}, timeout=60).raise_for_status()


def grpc_formula(fails):
    E = qg.Expression
    if fails:
        expr = E(div=qg.DivExpression(left=E(constant=1.0), right=E(constant=0.0)))
    else:
        expr = E(sum=qg.SumExpression(sum=[E(variable="$score"), E(variable="a")]))
    return qg.Query(formula=qg.Formula(expression=expr))


class Traffic:
    """One worker's calls. Each returns (op, expected, got): equal means OK."""

    def __init__(self, rest, grpc_addr, colls, seed_):
        self.rest = rest
        self.s = requests.Session()
        self.ch = grpc.insecure_channel(grpc_addr)
        self.points = qg.PointsStub(self.ch)
        self.on, self.off, self.writes, self.missing = colls
        self.rng = random.Random(seed_)

        self.detail = ""  # the last error's message, for the summary's examples

    def post(self, path, body=None, data=None, headers=None):
        r = self.s.post(f"{self.rest}{path}", json=body, data=data, headers=headers, timeout=30)
        self.detail = r.text[:200]
        return r.status_code

    def grpc_query(self, req, metadata=()):
        try:
            self.points.Query(req, timeout=30, metadata=metadata)
            return "OK"
        except grpc.RpcError as e:
            self.detail = (e.details() or "")[:200]
            return e.code().name

    def one(self):
        rng = self.rng
        k = rng.randrange(100)
        limit = rng.randint(1, POOL)
        if k < 12:
            return "rest search off", 200, self.post(f"/collections/{self.off}/points/search",
                                                     {"vector": vec(rng), "limit": limit, "with_payload": True})
        if k < 20:
            return "rest query on (no text)", 200, self.post(f"/collections/{self.on}/points/query",
                                                             {"query": vec(rng), "limit": limit})
        if k < 23:
            return "rest query reranked", 200, self.post(
                f"/collections/{self.on}/points/query",
                {"query": vec(rng), "limit": limit, "rerank": {"query": "wing flutter at supersonic speed"}})
        if k < 31:
            pts = [{"id": rng.randrange(1000, 2000), "vector": vec(rng), "payload": {"text": rng.choice(WORDS)}}
                   for _ in range(3)]
            r = self.s.put(f"{self.rest}/collections/{self.writes}/points?wait=true", json={"points": pts}, timeout=30)
            self.detail = r.text[:200]
            return "rest upsert", 200, r.status_code
        if k < 37:
            return "rest bad dimension", 400, self.post(f"/collections/{self.off}/points/search",
                                                        {"vector": [1.0, 2.0], "limit": 3})
        if k < 42:
            return "rest missing collection", 404, self.post(f"/collections/{self.missing}/points/query",
                                                             {"query": vec(rng)})
        if k < 47:
            return "rest invalid json", 400, self.post(f"/collections/{self.off}/points/query", data=b'{"query": [',
                                                       headers={"content-type": "application/json"})
        if k < 50:
            return "rest formula fails", 400, self.post(
                f"/collections/{self.off}/points/query",
                {"prefetch": {"query": vec(rng), "limit": 50}, "query": {"formula": {"ln": 0}}, "limit": limit})
        prefetch = [qg.PrefetchQuery(query=qg.Query(nearest=qg.VectorInput(dense=qg.DenseVector(data=vec(rng)))),
                                     limit=50)]
        if k < 75:
            return "grpc formula fails", "INVALID_ARGUMENT", self.grpc_query(
                qg.QueryPoints(collection_name=self.off, prefetch=prefetch, query=grpc_formula(True), limit=limit))
        if k < 82:
            return "grpc formula ok", "OK", self.grpc_query(
                qg.QueryPoints(collection_name=self.off, prefetch=prefetch, query=grpc_formula(False), limit=limit))
        nearest = qg.Query(nearest=qg.VectorInput(dense=qg.DenseVector(data=vec(rng))))
        if k < 88:
            return "grpc query on (no text)", "OK", self.grpc_query(
                qg.QueryPoints(collection_name=self.on, query=nearest, limit=limit))
        if k < 90:
            return "grpc query reranked", "OK", self.grpc_query(
                qg.QueryPoints(collection_name=self.on, query=nearest, limit=limit),
                metadata=(("x-rerank-query", "wing%20flutter"),))
        if k < 94:
            return "grpc missing collection", "NOT_FOUND", self.grpc_query(
                qg.QueryPoints(collection_name=self.missing, query=nearest))
        pts = [qg.PointStruct(id=qg.PointId(num=rng.randrange(2000, 3000)),
                              vectors=qg.Vectors(vector=qg.Vector(dense=qg.DenseVector(data=vec(rng)))))
               for _ in range(2)]
        try:
            self.points.Upsert(qg.UpsertPoints(collection_name=self.writes, wait=True, points=pts), timeout=30)
            got = "OK"
        except grpc.RpcError as e:
            got = e.code().name
            self.detail = (e.details() or "")[:200]
        return "grpc upsert", "OK", got


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--restart-at", type=float, default=0.5, help="fraction of the run (default the middle)")
    ap.add_argument("--grace", type=float, default=5.0, help="seconds after Qdrant is ready that still count as the restart window")
    ap.add_argument("--sample", type=float, default=5.0, help="RSS sampling interval, seconds")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "secondpass"))
    ap.add_argument("--json", default=None, help="write the summary here too")
    a = ap.parse_args()

    qdrant = QdrantServer().start()
    tag = f"soak_{os.getpid()}"
    colls = (f"{tag}_on", f"{tag}_off", f"{tag}_w", f"{tag}_missing")
    for c, n in zip(colls[:3], (100, 100, 0)):
        seed(qdrant.url, c, n)
    tmp = Path(tempfile.mkdtemp(prefix="secondpass-soak-"))
    cfg = tmp / "secondpass.toml"
    cfg.write_text(base_config(qdrant.url, qdrant.grpc_url) + f"[collections.{colls[0]}]\nenabled = true\npool = {POOL}\n")
    proc, addrs = start_secondpass(cfg, binary=a.bin)
    rest, grpc_addr = f"http://{addrs['rest']}", addrs["grpc"]

    duration = a.minutes * 60
    t0 = time.monotonic()
    end = t0 + duration
    window = {"stop": None, "ready": None}
    counts = collections.Counter()
    errors = []  # (t_start, t_end, kind)
    examples = {}  # kind -> first messages
    lock = threading.Lock()
    samples = []

    def worker(i):
        t = Traffic(rest, grpc_addr, colls, i)
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                op, want, got = t.one()
            except requests.RequestException as e:
                op, want, got = "rest", "answer", type(e).__name__
                t.detail = str(e)[:200]
            now = time.monotonic()
            with lock:
                counts[op] += 1
                if got != want:
                    kind = f"{op}: {got}"
                    errors.append((start - t0, now - t0, kind))
                    if len(examples.setdefault(kind, [])) < 2:
                        examples[kind].append(t.detail)

    def sampler():
        while time.monotonic() < end + a.sample and proc.poll() is None:
            samples.append((round(time.monotonic() - t0, 1), rss_kib(proc.pid)))
            time.sleep(a.sample)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.concurrency)]
    threads.append(threading.Thread(target=sampler, daemon=True))
    for th in threads:
        th.start()
    time.sleep(max(0.0, t0 + duration * a.restart_at - time.monotonic()))
    window["stop"] = time.monotonic() - t0
    print(f"soak: {window['stop']:.0f} s: SIGTERM to Qdrant", flush=True)
    qdrant.stop()  # Qdrant drains open connections first: this can take its 30 s grace
    window["exited"] = time.monotonic() - t0
    qdrant.start()
    window["ready"] = time.monotonic() - t0
    print(f"soak: {window['exited']:.1f} s: Qdrant exited; {window['ready']:.1f} s: ready again", flush=True)
    for th in threads:
        th.join()
    alive = proc.poll() is None
    proc.terminate()
    proc.wait(timeout=30)
    qdrant.close()
    shutil.rmtree(tmp, ignore_errors=True)

    w0, w1 = window["stop"], window["ready"] + a.grace
    inside = collections.Counter(k for s, e, k in errors if e >= w0 and s <= w1)
    outside = collections.Counter(k for s, e, k in errors if not (e >= w0 and s <= w1))
    rss = [r for _, r in samples]
    total = sum(counts.values())
    summary = {
        "minutes": a.minutes, "concurrency": a.concurrency, "binary": a.bin,
        "requests": total, "requests_per_s": round(total / duration, 1), "by_op": dict(sorted(counts.items())),
        "restart_window_s": [round(w0, 1), round(w1, 1)],
        "qdrant_sigterm_exited_ready_s": [round(window[k], 1) for k in ("stop", "exited", "ready")],
        "errors_inside_window": dict(inside), "errors_outside_window": dict(outside),
        "rss_mib": {"start": round(rss[0] / 1024, 1), "peak": round(max(rss) / 1024, 1),
                    "end": round(rss[-1] / 1024, 1)} if rss else {},
        "error_examples": examples,
        "rss_samples": samples, "secondpass_alive_at_end": alive,
    }
    text = json.dumps({k: v for k, v in summary.items() if k != "rss_samples"}, indent=1)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(summary, indent=1))
    sys.exit(0 if alive and not outside else 1)


if __name__ == "__main__":
    main()
