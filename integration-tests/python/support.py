"""Shared helpers for the Python tests: paths, starting servers, an independent scorer."""

import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models" / "cranfield-minilm-l6-ce"
TARGET = ROOT / "target" / "debug"


def start(cmd, prefix):
    """Starts a server that prints one line starting with `prefix` once bound."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith(prefix):
            return proc, line.strip()
    proc.kill()
    raise RuntimeError(f"{cmd[0]} exited before it was listening (code {proc.wait()})")


def start_secondpass(config_path, binary=None):
    """Starts target/debug/secondpass (or `binary`); returns the process and its addresses by name."""
    proc, line = start([str(binary or TARGET / "secondpass"), "serve", "--config", str(config_path)],
                       "secondpass listening")
    return proc, dict(kv.split("=", 1) for kv in line.split()[2:])


class NoQdrant(RuntimeError):
    """No Qdrant binary at all (no ../shared)."""


def qdrant_binary():
    """The real Qdrant binary: $SECONDPASS_QDRANT_BIN, else `scripts/qdrant path` (unpacks
    ../shared/qdrant/bin once). Raises NoQdrant when there is none."""
    if os.environ.get("SECONDPASS_QDRANT_BIN"):
        return os.environ["SECONDPASS_QDRANT_BIN"]
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "qdrant"), "path"], capture_output=True, text=True)
    if proc.returncode != 0:
        if "no Qdrant binary" in proc.stderr:
            raise NoQdrant(proc.stderr.strip())
        raise RuntimeError(f"scripts/qdrant path failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    # Linux: SIGTERM the server when the process that started it dies without cleaning up.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class QdrantServer:
    """A real Qdrant process on loopback ports with its own storage. `stop()` then
    `start()` restarts it on the same ports and storage (the soak script does that)."""

    def __init__(self, binary=None, http_port=None, grpc_port=None, storage=None):
        self.binary = binary or qdrant_binary()
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self._own_dir = storage is None
        self.dir = Path(storage or tempfile.mkdtemp(prefix="secondpass-py-qdrant-"))
        self.proc = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self):
        return f"http://127.0.0.1:{self.grpc_port}"

    def ready(self):
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout=30):
        env = dict(os.environ,
                   QDRANT__SERVICE__HOST="127.0.0.1",
                   QDRANT__SERVICE__HTTP_PORT=str(self.http_port),
                   QDRANT__SERVICE__GRPC_PORT=str(self.grpc_port),
                   QDRANT__STORAGE__STORAGE_PATH=str(self.dir / "storage"),
                   QDRANT__STORAGE__SNAPSHOTS_PATH=str(self.dir / "snapshots"),
                   QDRANT__TELEMETRY_DISABLED="true",
                   QDRANT__LOG_LEVEL="WARN")
        log = open(self.dir / "qdrant.log", "ab")
        self.proc = subprocess.Popen([self.binary], cwd=self.dir, env=env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        tail = (self.dir / "qdrant.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"Qdrant did not become ready on {self.url}; its log:\n{tail}")

    def stop(self, timeout=30):
        """SIGTERM (Qdrant stops cleanly), SIGKILL after `timeout` seconds."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def real_qdrant():
    """(REST URL, gRPC URL) of a real Qdrant: QDRANT_URL / QDRANT_GRPC_URL when set (scripts/test
    exports them; point them at another server to test against it), else Qdrant 1.18.3 started
    here on free ports with throw-away storage, stopped on exit. Raises NoQdrant only when
    there is no binary at all."""
    url = os.environ.get("QDRANT_URL")
    if url:
        grpc = os.environ.get("QDRANT_GRPC_URL")
        if not grpc:
            raise RuntimeError("QDRANT_URL is set without QDRANT_GRPC_URL: set both (or neither)")
        yield url.rstrip("/"), grpc.rstrip("/")
        return
    server = QdrantServer()
    try:
        server.start()
        yield server.url, server.grpc_url
    finally:
        server.close()


def under_ci():
    """CI sets CI=true: there a missing tool fails the test that needs it."""
    return os.environ.get("CI", "") not in ("", "false")


def missing(what):
    """For pytest: what the test needs is missing: skip, but fail under CI."""
    import pytest

    if under_ci():
        pytest.fail(f"required under CI: {what}", pytrace=False)
    pytest.skip(what)


def require_qdrant():
    """For pytest: a real Qdrant is needed (QDRANT_URL, or the binary in ../shared/qdrant/bin);
    without one the test fails, it is never skipped."""
    import pytest

    if os.environ.get("QDRANT_URL"):
        return
    try:
        qdrant_binary()
    except NoQdrant as e:
        pytest.fail(f"a real Qdrant is needed (set QDRANT_URL, or SECONDPASS_SHARED_DIR): {e}")


def base_config(upstream="http://127.0.0.1:1", grpc_upstream="http://127.0.0.1:1", model=MODEL):
    """TOML for a secondpass on ephemeral ports with the shared model (or `model`) as `local`."""
    return f"""
[server]
rest_listen = "127.0.0.1:0"
grpc_listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[upstream]
url = "{upstream}"
grpc_url = "{grpc_upstream}"
[rerankers.local]
kind = "onnx"
model_dir = "{model}"
runtime_path = "{ROOT / '.local/onnxruntime/lib/libonnxruntime.so'}"
max_length = 128
"""


def model_scores(query, docs, raw=False):
    """sigmoid(logit) (with raw: the logit) for each (query, doc), independently of secondpass."""
    # Imported here: the benches import this module for QdrantServer on machines
    # without onnxruntime (the GPU device).
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    session = onnxruntime.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
    encs = [tok.encode(query, d) for d in docs]  # the file's own only_second truncation at 128
    width = max(len(e.ids) for e in encs)

    def pad(rows):
        return np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64)

    feeds = {
        "input_ids": pad([e.ids for e in encs]),
        "attention_mask": pad([e.attention_mask for e in encs]),
        "token_type_ids": pad([e.type_ids for e in encs]),
    }
    logits = session.run(None, feeds)[0][:, 0]
    if raw:
        return [float(x) for x in logits]
    return [1 / (1 + math.exp(-x)) for x in logits]




def metric(text, name, **labels):
    """Sum of the samples of `name` in a Prometheus text exposition whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, rest = series.partition("{")
        if base != name:
            continue
        have = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv) if rest else {}
        if all(have.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


def require_tool(name, package):
    """The path of `name` (installed by scripts/setup); skip without it, fail under CI."""
    import pytest

    found = shutil.which(name)
    if found:
        return found
    why = f"{name} is not installed (scripts/setup {package})"
    if os.environ.get("CI", "") not in ("", "false"):
        pytest.fail(f"{why}: required under CI")
    pytest.skip(why)


class RedisServer:
    """A real redis-server on a free loopback port, without persistence. `kill()` (SIGKILL)
    then `start()` brings it back empty on the same port; `pause()`/`resume()` (SIGSTOP,
    SIGCONT) make it a server that accepts connections and never answers."""

    def __init__(self, binary="redis-server", port=None):
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="secondpass-py-redis-"))
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def cli(self, *args, timeout=5):
        """redis-cli's answer to one command (raw, one value a line)."""
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw", *map(str, args)],
                             capture_output=True, text=True, timeout=timeout)
        return out.stdout.strip()

    def start(self, timeout=10):
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.cli("PING", timeout=1) == "PONG":
                    return self
            time.sleep(0.05)
        tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}; its log:\n{tail}")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self):
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(what, check, timeout=30, every=0.05):
    """Polls `check()` until it is true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# Cranfield (../shared/eval/cranfield-train) as a Qdrant collection with server-side BM25.
CRANFIELD = SHARED / "eval" / "cranfield-train"


def cranfield_docs(n=None):
    with open(CRANFIELD / "corpus.jsonl") as f:
        return [json.loads(line) for line in f][:n]


def cranfield_queries(n=None):
    with open(CRANFIELD / "queries.jsonl") as f:
        return [json.loads(line)["text"] for line in f][:n]


def bm25(text):
    """A Document Qdrant turns into a BM25 sparse vector itself."""
    return {"text": text, "model": "qdrant/bm25"}


def http_json(method, url, body=None, headers=None, timeout=60):
    """One JSON request with the standard library only (scripts/demo runs without the venv);
    raises urllib.error.HTTPError on a 4xx/5xx answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def cranfield_qrels():
    """{query id: {point id: grade}} from the judgements (grade 4 = complete answer ... 1)."""
    qrels = {}
    with open(CRANFIELD / "qrels.tsv") as f:
        next(f)
        for line in f:
            q, d, g = line.split()
            qrels.setdefault(int(q), {})[int(d)] = int(g)
    return qrels


def ndcg(ranked, grades, k=10):
    """nDCG@k as `secondpass eval` computes it: linear gain (the grade), log2(rank+1)
    discount, ideal ranking from every judged document of the query."""
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def create_bm25_collection(url, name, **params):
    """`name` with one sparse vector `bm25` (IDF); `params`: shard_number, sharding_method..."""
    body = {"vectors": {}, "sparse_vectors": {"bm25": {"modifier": "idf"}}, **params}
    http_json("PUT", f"{url}/collections/{name}", body)


def upsert_docs(url, name, docs, shard_key=None, batch=200, fields=("text",)):
    """Cranfield documents as points: BM25 of title and text, payload `fields`."""
    for i in range(0, len(docs), batch):
        body = {"points": [{"id": d["id"], "vector": {"bm25": bm25(d["title"] + " " + d["text"])},
                            "payload": {f: d[f] for f in fields}} for d in docs[i:i + batch]]}
        if shard_key is not None:
            body["shard_key"] = shard_key
        http_json("PUT", f"{url}/collections/{name}/points?wait=true", body, timeout=300)
