#!/usr/bin/env python3
"""End-to-end benchmarks of the secondpass binary in front of the real Qdrant (1.18.3
from ../shared/qdrant/bin, started here on free ports with throw-away storage), on
loopback only, every run bounded in time:

  c) pass-through: p50/p99 latency and throughput of a vector query (limit 10, with
     payload) sent straight to Qdrant vs through secondpass on a collection with
     reranking off (wrk when installed, else a Python asyncio client);
  d) rerank: request latency p50/p99 at concurrency 1, 4 and 16 with pool 50 and 100
     (each response checked for `"rerank": {"status": "applied"}`);
  e) resident memory (VmRSS) of secondpass idle with the model loaded, and its peak
     (VmHWM) under the rerank load.

Needs `cargo build --release --bins` (target/release/secondpass, or --bin-dir),
.local/onnxruntime (scripts/setup), the shared model and the shared Qdrant binary.
The score cache stays off (its default), so every rerank runs the model.

  proxy_bench.py [--bin-dir DIR] [--docs 600] [--model int8|fp32] [--seconds 10]
                 [--rerank-seconds 12] [--concurrency 1,4,16] [--pools 50,100]
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integration-tests" / "python"))
from support import QdrantServer  # noqa: E402  (the real Qdrant, as the tests start it)

SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "cranfield-minilm-l6-ce"
EVAL = SHARED / "eval" / "cranfield-train"
DIM = 4


def start(cmd, prefix, env=None):
    """Starts a server that prints a line starting with `prefix` once bound."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:
        if line.startswith(prefix):
            # Keep draining stdout so the server never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, line.strip()
    proc.kill()
    sys.exit(f"{cmd[0]} exited before it was listening (code {proc.wait()})")


def config(upstream, model):
    model_file = 'model_file = "model_int8.onnx"' if model == "int8" else ""
    return f"""
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "http://127.0.0.1:1"
[log]
level = "warn"
[rerankers.local]
kind = "onnx"
model_dir = "{MODEL}"
{model_file}
runtime_path = "{ROOT / '.local/onnxruntime/lib/libonnxruntime.so'}"
max_length = 128
batch_size = 32
[collections.docs]
enabled = true
text_field = "text"
pool = 50
max_pool = 200
timeout_ms = 120000
"""


def seed(url, n):
    rng = random.Random(0)
    docs = [json.loads(l) for l in (EVAL / "corpus.jsonl").read_text().splitlines()[:n]]
    with httpx.Client(base_url=url, timeout=30) as c:
        for name in ("docs", "plain"):
            r = c.put(f"/collections/{name}", json={"vectors": {"size": DIM, "distance": "Cosine"}})
            r.raise_for_status()
            points = [
                {
                    "id": i + 1,
                    "vector": [rng.uniform(-1, 1) for _ in range(DIM)],
                    "payload": {"title": d.get("title", ""), "text": d["text"]},
                }
                for i, d in enumerate(docs)
            ]
            for k in range(0, len(points), 200):
                c.put(f"/collections/{name}/points?wait=true", json={"points": points[k : k + 200]}).raise_for_status()
    return len(docs)


def rss_kib(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * p))]


# ---- c) pass-through ----

QUERY_BODY = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 10, "with_payload": True}


def wrk(url, seconds, connections, threads):
    """Runs wrk with a POST body; returns (requests/s, p50 ms, p99 ms)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write(f"wrk.body = '{json.dumps(QUERY_BODY)}'\n")
        script = f.name
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script)

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} error responses from {url}")
    return rps, ms("50"), ms("99")


async def py_load(url, body, seconds, concurrency, check=None):
    """`concurrency` clients sending `body` back to back; returns latencies (s) and elapsed."""
    latencies = []
    until = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:

        async def worker(k):
            n = 0
            while time.perf_counter() < until or n == 0:
                b = body(k, n) if callable(body) else body
                t = time.perf_counter()
                r = await client.post(url, json=b)
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                if check:
                    check(r.json())
                n += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        return latencies, time.perf_counter() - start


def pass_through(direct, proxied, seconds):
    print("## c) pass-through (collection `plain`, reranking off)", flush=True)
    results = {}
    if shutil.which("wrk"):
        # One connection: the latency of a lone request; 32 over 2 threads: throughput.
        for name, base in (("direct", direct), ("secondpass", proxied)):
            url = f"{base}/collections/plain/points/query"
            rps1, p50, p99 = wrk(url, seconds, 1, 1)
            rps, p50_loaded, p99_loaded = wrk(url, seconds, 32, 2)
            results[name] = (p50, p99, rps)
            print(
                f"pass-through target={name} tool=wrk c=1: p50_ms={p50:.3f} p99_ms={p99:.3f} rps={rps1:.0f} | "
                f"c=32: rps={rps:.0f} p50_ms={p50_loaded:.3f} p99_ms={p99_loaded:.3f}",
                flush=True,
            )
    else:
        for name, base in (("direct", direct), ("secondpass", proxied)):
            url = f"{base}/collections/plain/points/query"
            lat, _ = asyncio.run(py_load(url, QUERY_BODY, seconds, 1))
            lat32, el32 = asyncio.run(py_load(url, QUERY_BODY, seconds, 32))
            p50, p99, rps = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3, len(lat32) / el32
            results[name] = (p50, p99, rps)
            print(f"pass-through target={name} tool=python c=1: p50_ms={p50:.3f} p99_ms={p99:.3f} | c=32: rps={rps:.0f}", flush=True)
    (d50, d99, drps), (s50, s99, srps) = results["direct"], results["secondpass"]
    print(
        f"pass-through overhead: p50 +{(s50 - d50) * 1000:.0f} us, p99 +{(s99 - d99) * 1000:.0f} us, "
        f"throughput {100 * srps / drps:.1f}% of direct",
        flush=True,
    )


# ---- d) rerank latency, e) memory ----


def rerank_latency(proxied, pid, queries, seconds, concurrencies, pools):
    print("## d) rerank latency (collection `docs`, body extension, score cache off)", flush=True)
    url = f"{proxied}/collections/docs/points/query"
    rng = random.Random(1)

    def body(k, n):
        pool = body.pool
        return {
            "query": [rng.uniform(-1, 1) for _ in range(DIM)],
            "limit": 10,
            "with_payload": ["title"],
            "rerank": {"query": queries[(k * 7 + n) % len(queries)], "pool": pool},
        }

    def check(resp):
        status = (resp.get("rerank") or {}).get("status")
        if status != "applied":
            sys.exit(f"rerank not applied: {json.dumps(resp.get('rerank'))}")

    peak = 0
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for pool in pools:
        body.pool = pool
        for c in concurrencies:
            # Each client sends at least one request; slow points run past `seconds`.
            lat, elapsed = asyncio.run(py_load(url, body, seconds, c, check))
            print(
                f"rerank pool={pool} concurrency={c}: p50_ms={pct(lat, 0.5) * 1e3:.0f} "
                f"p99_ms={pct(lat, 0.99) * 1e3:.0f} requests={len(lat)} "
                f"pairs_per_s={pool * len(lat) / elapsed:.1f}",
                flush=True,
            )
    stop.set()
    sampler.join()
    return peak


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", default=os.environ.get("SECONDPASS_BIN_DIR", ROOT / "target" / "release"))
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--model", default="int8", choices=["int8", "fp32"])
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rerank-seconds", type=float, default=12)
    p.add_argument("--concurrency", default="1,4,16")
    p.add_argument("--pools", default="50,100")
    a = p.parse_args()
    bins = Path(a.bin_dir)
    if not (bins / "secondpass").is_file():
        sys.exit(f"{bins / 'secondpass'} is missing: cargo build --release --bins")

    qdrant = QdrantServer().start()
    direct = qdrant.url
    procs = []
    try:
        n = seed(direct, a.docs)
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(config(direct, a.model))
            cfg = f.name
        env = dict(os.environ, RUST_LOG="warn")
        proxy, line = start([str(bins / "secondpass"), "serve", "--config", cfg], "secondpass listening", env)
        procs.append(proxy)
        addrs = dict(kv.split("=", 1) for kv in line.split()[2:])
        proxied = f"http://{addrs['rest']}"
        print(f"# Qdrant {direct}, secondpass {proxied}; {n} Cranfield documents, {DIM}-dim random vectors; model {a.model}", flush=True)
        # Load the model's pages and warm the path once before measuring.
        queries = [json.loads(l)["text"] for l in (EVAL / "queries.jsonl").read_text().splitlines()[:50]]
        httpx.post(
            f"{proxied}/collections/docs/points/query",
            json={"query": [0.1] * DIM, "limit": 5, "rerank": {"query": queries[0]}},
            timeout=120,
        ).raise_for_status()
        time.sleep(1)
        idle = rss_kib(proxy.pid)
        print(f"## e) memory\nrss idle_mib={idle / 1024:.1f} (model {a.model} loaded, one rerank done)", flush=True)

        pass_through(direct, proxied, a.seconds)
        peak = rerank_latency(
            proxied,
            proxy.pid,
            queries,
            a.rerank_seconds,
            [int(c) for c in a.concurrency.split(",")],
            [int(x) for x in a.pools.split(",")],
        )
        print(
            f"rss under_load_peak_mib={peak / 1024:.1f} hwm_mib={rss_kib(proxy.pid, 'VmHWM') / 1024:.1f} "
            f"after_mib={rss_kib(proxy.pid) / 1024:.1f}",
            flush=True,
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        qdrant.close()


if __name__ == "__main__":
    main()
