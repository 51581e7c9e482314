#!/usr/bin/env python3
"""Pass-through overhead as real clients see it: the same search sent straight to the
real Qdrant and through secondpass (reranking off), on loopback, every run bounded in time.

Clients, each with its own default headers and kept-alive connections:
  wrk           wrk 4.1 with no Accept-Encoding (what the old benchmark measured)
  wrk-gzip      wrk with `Accept-Encoding: gzip` (what most HTTP clients send)
  requests      Python `requests` Sessions (gzip by default), one per thread
  py-rest       the official Python client, AsyncQdrantClient over REST (httpx)
  py-grpc       the official Python client, AsyncQdrantClient over gRPC
  js            the official JS client, @qdrant/js-client-rest (Node's fetch/undici)
at 1 and 32 connections (concurrent callers). Direct and through-secondpass runs
alternate, `--rounds` times each; each row reports the median round.

`--reference nginx` adds a third run per round through nginx (one worker, kept-alive
upstream connections, no buffering; REST clients only): what a mature C reverse proxy
adds on the same machine, as a floor for what any proxy hop costs there.

Needs: `cargo build --release --bin secondpass`, `scripts/setup --python`, wrk (apt),
Node.js with `npm install --prefix .local/bench-js @qdrant/js-client-rest@1.20.0`
(done here when missing; the npm registry is the only download). Starts its own Qdrant
(`scripts/qdrant start`) unless QDRANT_URL / QDRANT_GRPC_URL are set.

  passthrough.py [--seconds 5] [--rounds 3] [--docs 600] [--clients wrk,wrk-gzip,...]
                 [--connections 1,32] [--bin target/release/secondpass] [--json FILE]
                 [--reference nginx]
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
EVAL = SHARED / "eval" / "cranfield-train"
PY = ROOT / ".local" / "venv" / "bin" / "python"
JS_DIR = ROOT / ".local" / "bench-js"
DIM = 4
COLLECTION = "passthrough"
QUERY = {"query": [0.2, 0.1, 0.9, 0.7], "limit": 10, "with_payload": True}
CLIENTS = ["wrk", "wrk-gzip", "requests", "py-rest", "py-grpc", "js"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qdrant():
    """(rest_url, grpc_url, stop) of the Qdrant to measure against."""
    if os.environ.get("QDRANT_URL"):
        return os.environ["QDRANT_URL"], os.environ["QDRANT_GRPC_URL"], lambda: None
    out = subprocess.run(["bash", ROOT / "scripts/qdrant", "start"], check=True, capture_output=True, text=True).stdout
    env = dict(line.split("=", 1) for line in out.split())
    return env["QDRANT_URL"], env["QDRANT_GRPC_URL"], lambda: subprocess.run(["bash", ROOT / "scripts/qdrant", "stop"])


def seed(url, n):
    import requests

    rng = random.Random(0)
    docs = [json.loads(l) for l in (EVAL / "corpus.jsonl").read_text().splitlines()[:n]]
    s = requests.Session()
    s.delete(f"{url}/collections/{COLLECTION}")
    s.put(f"{url}/collections/{COLLECTION}", json={"vectors": {"size": DIM, "distance": "Cosine"}}).raise_for_status()
    points = [
        {"id": i + 1, "vector": [rng.uniform(-1, 1) for _ in range(DIM)], "payload": {"title": d.get("title", ""), "text": d["text"]}}
        for i, d in enumerate(docs)
    ]
    for k in range(0, len(points), 200):
        s.put(f"{url}/collections/{COLLECTION}/points?wait=true", json={"points": points[k : k + 200]}).raise_for_status()


def start_secondpass(binary, rest_url, grpc_url):
    rest, grpc, admin = free_port(), free_port(), free_port()
    cfg = Path(tempfile.mkdtemp()) / "secondpass.toml"
    # No reranker section: the default config's model is not needed for pass-through.
    cfg.write_text(
        f"""
[server]
rest_listen = "127.0.0.1:{rest}"
grpc_listen = "127.0.0.1:{grpc}"
admin_listen = "127.0.0.1:{admin}"
[upstream]
url = "{rest_url}"
grpc_url = "{grpc_url}"
[log]
level = "warn"
[rerankers.local]
kind = "onnx"
model_dir = "{SHARED / 'models/cranfield-minilm-l6-ce'}"
runtime_path = "{ROOT / '.local/onnxruntime/lib/libonnxruntime.so'}"
max_length = 128
"""
    )
    proc = subprocess.Popen([binary, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listening(proc, "secondpass", rest, 60)
    return proc, f"http://127.0.0.1:{rest}", f"http://127.0.0.1:{grpc}"


def listening(proc, name, port, seconds):
    """Waits until `proc` accepts connections on `port`; exits the script if it dies
    or does not within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{name} exited with {proc.returncode}")
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"{name} did not listen within {seconds} s")


def start_nginx(rest_url):
    """nginx in front of Qdrant's REST port, the way one would deploy it as a plain
    reverse proxy: (stop, url)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        sys.exit("--reference nginx: nginx is not installed (apt-get install nginx-light)")
    port, upstream = free_port(), rest_url.split("//", 1)[1]
    prefix = Path(tempfile.mkdtemp())
    (prefix / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {prefix};
  upstream qdrant {{ server {upstream}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://qdrant;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
""")
    proc = subprocess.Popen([binary, "-p", prefix, "-c", prefix / "nginx.conf", "-e", "stderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    listening(proc, "nginx", port, 10)
    return (lambda: (proc.terminate(), proc.wait())), f"http://127.0.0.1:{port}"


# ---- the clients; each returns (requests/s, p50 ms, p99 ms) ----


def run_wrk(url, connections, seconds, gzip):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        if gzip:
            f.write('wrk.headers["Accept-Encoding"] = "gzip"\n')
        f.write(f"wrk.body = '{json.dumps(QUERY)}'\n")
        script = f.name
    threads = 1 if connections == 1 else 2
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", "-s", script,
         f"{url}/collections/{COLLECTION}/points/query"],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(script)
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        sys.exit(f"wrk saw {m.group(1)} error answers from {url}")

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), ms("50"), ms("99")


PY_CLIENT = r'''
import asyncio, json, sys, threading, time
kind, rest, grpc, coll, conns, seconds = sys.argv[1:7]
conns, seconds = int(conns), float(seconds)
query = json.loads(sys.argv[7])
lat = []

def stats(elapsed):
    lat.sort()
    pick = lambda p: lat[min(len(lat) - 1, round((len(lat) - 1) * p))] * 1e3
    print(json.dumps([len(lat) / elapsed, pick(0.5), pick(0.99)]))

if kind == "requests":
    import requests
    until = time.perf_counter() + seconds
    def worker():
        s = requests.Session()
        url = f"{rest}/collections/{coll}/points/query"
        s.post(url, json=query).raise_for_status()  # connect before the clock
        while time.perf_counter() < until:
            t = time.perf_counter()
            r = s.post(url, json=query)
            lat.append(time.perf_counter() - t)
            r.raise_for_status()
    threads = [threading.Thread(target=worker) for _ in range(conns)]
    start = time.perf_counter()
    [t.start() for t in threads]; [t.join() for t in threads]
    stats(time.perf_counter() - start)
else:
    from qdrant_client import AsyncQdrantClient
    async def main():
        grpc_port = int(grpc.rsplit(":", 1)[1])
        if kind == "py-grpc":
            c = AsyncQdrantClient(url=rest, grpc_port=grpc_port, prefer_grpc=True, timeout=30, check_compatibility=False)
        else:
            c = AsyncQdrantClient(url=rest, timeout=30, check_compatibility=False)
        call = lambda: c.query_points(coll, query=query["query"], limit=query["limit"], with_payload=True)
        await asyncio.gather(*(call() for _ in range(conns)))  # open the connections
        until = time.perf_counter() + seconds
        async def worker():
            while time.perf_counter() < until:
                t = time.perf_counter()
                r = await call()
                lat.append(time.perf_counter() - t)
                assert len(r.points) == query["limit"]
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        stats(time.perf_counter() - start)
        await c.close()
    asyncio.run(main())
'''

JS_CLIENT = r'''
const { QdrantClient } = require(process.env.JS_DIR + "/node_modules/@qdrant/js-client-rest");
const [rest, coll, conns, seconds, q] = process.argv.slice(1);
const query = JSON.parse(q);
const client = new QdrantClient({ url: rest, checkCompatibility: false });
const lat = [];
const call = () => client.query(coll, { query: query.query, limit: query.limit, with_payload: true });
(async () => {
  await Promise.all(Array.from({ length: +conns }, call));
  const until = performance.now() + seconds * 1000;
  const start = performance.now();
  await Promise.all(Array.from({ length: +conns }, async () => {
    while (performance.now() < until) {
      const t = performance.now();
      const r = await call();
      lat.push(performance.now() - t);
      if (r.points.length !== query.limit) throw new Error("short answer");
    }
  }));
  const elapsed = (performance.now() - start) / 1000;
  lat.sort((a, b) => a - b);
  const pick = (p) => lat[Math.min(lat.length - 1, Math.round((lat.length - 1) * p))];
  console.log(JSON.stringify([lat.length / elapsed, pick(0.5), pick(0.99)]));
})().catch((e) => { console.error(e); process.exit(1); });
'''


def run_client(kind, rest, grpc, connections, seconds):
    if kind in ("wrk", "wrk-gzip"):
        return run_wrk(rest, connections, seconds, kind == "wrk-gzip")
    if kind == "js":
        cmd = ["node", "-e", JS_CLIENT, rest, COLLECTION, str(connections), str(seconds), json.dumps(QUERY)]
        env = {**os.environ, "JS_DIR": str(JS_DIR)}
    else:
        cmd = [PY, "-c", PY_CLIENT, kind, rest, grpc, COLLECTION, str(connections), str(seconds), json.dumps(QUERY)]
        env = os.environ
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{kind} client failed:\n{out.stderr[-2000:]}")
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def needs(clients):
    if any(c.startswith("wrk") for c in clients) and not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk), or leave it out with --clients")
    if "js" in clients and not (JS_DIR / "node_modules/@qdrant/js-client-rest").is_dir():
        print("installing @qdrant/js-client-rest@1.20.0 into .local/bench-js", flush=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", JS_DIR, "@qdrant/js-client-rest@1.20.0"], check=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--docs", type=int, default=600)
    p.add_argument("--clients", default=",".join(CLIENTS))
    p.add_argument("--connections", default="1,32")
    p.add_argument("--bin", default=str(ROOT / "target/release/secondpass"))
    p.add_argument("--json", help="write every round here")
    p.add_argument("--reference", choices=["nginx"], help="also measure nginx as a plain reverse proxy")
    a = p.parse_args()
    clients = a.clients.split(",")
    needs(clients)
    rest, grpc, stop_qdrant = qdrant()
    proxy, stop_nginx, n_rest = None, None, None
    try:
        seed(rest, a.docs)
        proxy, p_rest, p_grpc = start_secondpass(a.bin, rest, grpc)
        if a.reference:
            stop_nginx, n_rest = start_nginx(rest)
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        print(f"# {cpu}, {os.cpu_count()} cores; {a.docs} points, query limit 10 with payload; "
              f"{a.seconds} s per run, {a.rounds} rounds, median round shown", flush=True)
        ref = " | nginx p50 / p99 ms | nginx added p50 | nginx % of direct" if n_rest else ""
        print(f"| client | conns | direct p50 / p99 ms | through p50 / p99 ms | added p50 | direct req/s | through req/s | % of direct{ref} |")
        print("|---|---|---|---|---|---|---|---|" + ("---|---|---|" if n_rest else ""))
        rows = []
        for kind in clients:
            for conns in (int(c) for c in a.connections.split(",")):
                # nginx here proxies REST only.
                targets = {"direct": (rest, grpc), "through": (p_rest, p_grpc)}
                if n_rest and kind != "py-grpc":
                    targets["nginx"] = (n_rest, grpc)
                runs = {k: [] for k in targets}
                for _ in range(a.rounds):
                    for k, (r, g) in targets.items():
                        runs[k].append(run_client(kind, r, g, conns, a.seconds))
                med = {k: sorted(v, key=lambda r: r[1])[len(v) // 2] for k, v in runs.items()}
                rows.append({"client": kind, "connections": conns, "runs": runs})
                print(f"| {kind} | {conns} | {row(med, 'through')}{row(med, 'nginx') if n_rest else ''} |", flush=True)
        if a.json:
            Path(a.json).write_text(json.dumps({"cpu": cpu, "seconds": a.seconds, "rows": rows}, indent=1))
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        if stop_nginx:
            stop_nginx()
        stop_qdrant()


def row(med, via):
    """The cells of one proxy against direct (the direct cells only for secondpass)."""
    drps, d50, d99 = med["direct"]
    if via not in med:
        return " | — | — | —"
    rps, p50, p99 = med[via]
    added = f"{(p50 - d50) * 1000:+.0f} µs"
    if via == "nginx":
        return f" | {p50:.3f} / {p99:.3f} | {added} | {100 * rps / drps:.1f}%"
    return f"{d50:.3f} / {d99:.3f} | {p50:.3f} / {p99:.3f} | {added} | {drps:.0f} | {rps:.0f} | {100 * rps / drps:.1f}%"


if __name__ == "__main__":
    main()
