#!/usr/bin/env python3
"""The GPU checks that go through the secondpass binary (scripts/bench/gpu_check.sh
runs this): the real Qdrant (1.18.3, from the shared binary the GPU pack carries) and
secondpass on loopback, every run bounded in time.

1. /admin/status and the startup log say which execution provider each reranker
   runs on;
2. the 16 reference pairs of the shared model through POST /rerank (raw scores)
   against their CPU fp32 logits (reference.json `onnx_fp32_logit`): max difference
   must be <= --tolerance (2e-2);
3. the REST proxy: a vector query with pool 100, documents long enough to fill
   --length tokens, p50/p99 latency at each concurrency and the pairs/s; each answer
   checked for `"rerank": {"status": "applied"}`; and the widened search alone, sent
   straight to Qdrant at the same concurrency (`qdrant ...` lines), so that Qdrant's
   share of the latency can be taken out;
4. GPU memory in use by secondpass (nvidia-smi), when there is a GPU.

    gpu_latency.py --bin-dir DIR --model-dir DIR [--model-file model_fp16.onnx]
                   [--device cuda:0] [--lengths 256,128] [--concurrency 1,8,32]
                   [--seconds 8] [--pool 100] [--docs 400] [--log FILE]
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_bench as pb  # noqa: E402  (py_load, pct, rss_kib, QdrantServer)

DIM = 4
TOKEN = "gpu-check-token"


def config(upstream, a, runtime):
    model_file = f'model_file = "{a.model_file}"' if a.model_file else ""
    rt = f'runtime_path = "{runtime}"' if runtime else ""
    longest = max(int(x) for x in a.lengths.split(","))
    # `ref` scores the reference pairs at the length they were made at (128); `local`
    # serves the proxy at the longest length; collections set shorter ones.
    rerankers = "".join(
        f"""
[rerankers.{name}]
kind = "onnx"
model_dir = "{a.model_dir}"
{model_file}
{rt}
device = "{a.device}"
max_length = {length}
queue_capacity = 1024
{a.extra}
"""
        for name, length in (("ref", 128), ("local", longest))
    )
    collections = "".join(
        f"""
[collections.docs{length}]
enabled = true
reranker = "local"
text_field = "text"
pool = {a.pool}
max_pool = {max(a.pool, 200)}
max_length = {length}
timeout_ms = 120000
"""
        for length in (int(x) for x in a.lengths.split(","))
    )
    return f"""
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "http://127.0.0.1:1"
[log]
level = "info"
format = "json"
[admin]
token_env = "SECONDPASS_GPU_CHECK_TOKEN"
[rerank_api]
enabled = true
rerankers = ["ref"]
{rerankers}
{collections}
"""


def long_docs(eval_dir, n):
    """Abstracts joined into documents of at least 300 words (every pair fills 256 tokens)."""
    docs, cur = [], []
    for line in (eval_dir / "corpus.jsonl").read_text().splitlines():
        cur.append(json.loads(line)["text"])
        if len(" ".join(cur).split()) >= 300:
            docs.append(" ".join(cur))
            cur = []
            if len(docs) == n:
                break
    return docs


def seed(url, docs, collections):
    rng = random.Random(0)
    with httpx.Client(base_url=url, timeout=60) as c:
        for name in collections:
            c.put(f"/collections/{name}", json={"vectors": {"size": DIM, "distance": "Cosine"}}).raise_for_status()
            points = [
                {"id": i + 1, "vector": [rng.uniform(-1, 1) for _ in range(DIM)], "payload": {"title": f"d{i}", "text": d}}
                for i, d in enumerate(docs)
            ]
            for k in range(0, len(points), 100):
                c.put(f"/collections/{name}/points?wait=true", json={"points": points[k : k + 100]}).raise_for_status()


def gpu_mib(pid):
    """GPU memory (MiB) used by `pid` and by the whole card, or None without nvidia-smi."""
    try:
        apps = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20,
        ).stdout
        card = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20,
        ).stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return None
    mine = sum(int(m) for p, m in (l.split(", ") for l in apps.splitlines() if ", " in l) if int(p) == pid)
    return mine, card.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--model-file", default="model_fp16.onnx")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--lengths", default="256,128")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--sustained-concurrency", type=int, default=32, help="also run at this concurrency for every length")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--pool", type=int, default=100)
    p.add_argument("--docs", type=int, default=400)
    p.add_argument("--tolerance", type=float, default=2e-2)
    p.add_argument("--extra", default="", help="more TOML lines for each reranker section")
    p.add_argument("--runtime", default=os.environ.get("ORT_DYLIB_PATH", ""))
    p.add_argument("--eval-dir", default=os.environ.get("SECONDPASS_EVAL_DIR", pb.EVAL))
    p.add_argument("--log", default=None, help="write secondpass's log here")
    a = p.parse_args()
    bins, model_dir = Path(a.bin_dir), Path(a.model_dir)
    failures = []

    qdrant = pb.QdrantServer().start()
    direct = qdrant.url
    procs = []
    try:
        lengths = [int(x) for x in a.lengths.split(",")]
        docs = long_docs(Path(a.eval_dir), a.docs)
        seed(direct, docs, [f"docs{n}" for n in lengths])
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(config(direct, a, a.runtime))
            cfg = f.name
        env = dict(os.environ, SECONDPASS_GPU_CHECK_TOKEN=TOKEN, RUST_LOG="info")
        log = open(a.log, "w") if a.log else None
        started = time.perf_counter()
        # The server logs to stdout: everything goes to the log file, and the
        # "listening" line tells where it is.
        proxy = subprocess.Popen([str(bins / "secondpass"), "serve", "--config", cfg], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env=env)
        procs.append(proxy)
        import queue
        import threading

        listening = queue.Queue()

        def drain():
            for out_line in proxy.stdout:
                if log:
                    log.write(out_line)
                    log.flush()
                if out_line.startswith("secondpass listening"):
                    listening.put(out_line)
            listening.put(None)

        threading.Thread(target=drain, daemon=True).start()
        line = listening.get(timeout=600)
        if line is None:
            sys.exit(f"secondpass exited before listening (code {proxy.wait()}); see {a.log}")
        addrs = dict(kv.split("=", 1) for kv in line.split()[2:])
        rest, admin = f"http://{addrs['rest']}", f"http://{addrs['admin']}"
        print(f"# secondpass up in {time.perf_counter() - started:.1f} s; Qdrant {direct}; {len(docs)} documents "
              f"of >= 300 words; model {model_dir / (a.model_file or '')} on {a.device}", flush=True)

        # 1. which provider each reranker runs on
        status = httpx.get(f"{admin}/admin/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        for r in status["rerankers"]:
            x = r.get("execution") or {}
            print(f"status reranker={r['name']} provider={x.get('provider')} device={x.get('device')} "
                  f"inputs_on={json.dumps(x.get('inputs_on'), separators=(',', ':'))} io_binding={x.get('io_binding')} "
                  f"batch_size={x.get('batch_size')} max_batch_tokens={x.get('max_batch_tokens')} "
                  f"tokenizer_threads={x.get('tokenizer_threads')} onnxruntime={x.get('onnxruntime')} "
                  f"warmup_ms={x.get('warmup_ms', 0):.1f}", flush=True)
            if a.device.startswith("cuda") and x.get("provider") != "CUDAExecutionProvider":
                failures.append(f"reranker {r['name']} is not on CUDA: {x}")

        # 2. the reference pairs through /rerank, raw scores
        refs = json.loads((model_dir / "reference.json").read_text())
        worst = 0.0
        for ref in refs:
            body = {"query": ref["query"], "texts": [ref["document"]], "raw_scores": True}
            got = httpx.post(f"{rest}/rerank", json=body, timeout=60).json()[0]["score"]
            worst = max(worst, abs(got - ref["onnx_fp32_logit"]))
        ok = worst <= a.tolerance
        print(f"reference pairs={len(refs)} max_abs_diff_vs_cpu_fp32={worst:.4f} tolerance={a.tolerance} "
              f"{'PASS' if ok else 'FAIL'}", flush=True)
        if not ok:
            failures.append(f"reference pairs differ by {worst:.4f} > {a.tolerance}")

        # 3. latency through the proxy
        queries = [json.loads(l)["text"] for l in (Path(a.eval_dir) / "queries.jsonl").read_text().splitlines()[:50]]
        rng = random.Random(1)
        peak = [0, ""]
        for length in lengths:
            url = f"{rest}/collections/docs{length}/points/query"

            def body(k, n):
                return {"query": [rng.uniform(-1, 1) for _ in range(DIM)], "limit": min(10, a.pool), "with_payload": ["title"],
                        "rerank": {"query": queries[(k * 7 + n) % len(queries)], "pool": a.pool}}

            def check(resp):
                rr = resp.get("rerank") or {}
                if rr.get("status") != "applied" or rr.get("candidates") != a.pool:
                    sys.exit(f"rerank not applied to {a.pool} candidates: {json.dumps(rr)}")

            httpx.post(url, json=body(0, 0), timeout=120).raise_for_status()  # warm this length
            levels = [int(c) for c in a.concurrency.split(",")] if length == lengths[0] else []
            if a.sustained_concurrency not in levels:
                levels.append(a.sustained_concurrency)
            for c in levels:
                # Qdrant's share: the search secondpass makes of it (the pool, with the
                # text), straight to Qdrant.
                def widened(k, n):
                    return {"query": body(k, n)["query"], "limit": a.pool, "with_payload": ["title", "text"]}

                wide = f"{direct}/collections/docs{length}/points/query"
                qlat, _ = asyncio.run(pb.py_load(wide, widened, min(a.seconds, 2), c))
                print(f"qdrant max_len={length} pool={a.pool} concurrency={c} | p50_ms={pb.pct(qlat, 0.5) * 1e3:.2f} "
                      f"p99_ms={pb.pct(qlat, 0.99) * 1e3:.2f} requests={len(qlat)}", flush=True)
                lat, elapsed = asyncio.run(pb.py_load(url, body, a.seconds, c, check))
                g = gpu_mib(proxy.pid)
                if g and g[0] >= peak[0]:
                    peak = [g[0], g[1]]
                print(f"proxy max_len={length} pool={a.pool} concurrency={c} | p50_ms={pb.pct(lat, 0.5) * 1e3:.1f} "
                      f"p99_ms={pb.pct(lat, 0.99) * 1e3:.1f} requests={len(lat)} "
                      f"pairs_per_s={a.pool * len(lat) / elapsed:.0f}", flush=True)
        # 4. memory
        g = gpu_mib(proxy.pid)
        if g is not None:
            print(f"gpu_memory secondpass_mib={max(peak[0], g[0])} card_used_total_mib=\"{peak[1] or g[1]}\"", flush=True)
        print(f"rss secondpass_hwm_mib={pb.rss_kib(proxy.pid, 'VmHWM') / 1024:.0f}", flush=True)
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        qdrant.close()
    if failures:
        print("FAILED: " + "; ".join(failures), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
