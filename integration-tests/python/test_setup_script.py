"""Tests for scripts/setup's model step, without network.

A fake Hugging Face Hub (http.server on 127.0.0.1, port 0) serves the shared test model's
files under /<repo>/resolve/main/...; the script is pointed at it with HF_ENDPOINT and
writes into a temporary .local via SECONDPASS_LOCAL_DIR, so the repo's own .local is
never touched.
"""

import hashlib
import http.server
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "setup"
SHARED_MODEL = Path(
    os.environ.get("SECONDPASS_SHARED_MODELS", ROOT.parent / "shared" / "models")
) / "cranfield-minilm-l6-ce"
REPO = "test-org/test-model"
TOKEN = "hf_test_token"


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """The three files a model needs. The shared model's when present; otherwise small
    stand-ins, since only the download path is under test, not the model."""
    if (SHARED_MODEL / "model.onnx").is_file():
        return {name: SHARED_MODEL / name for name in ("model.onnx", "tokenizer.json", "config.json")}
    d = tmp_path_factory.mktemp("fake-model")
    files = {"model.onnx": os.urandom(3 << 20), "tokenizer.json": b'{"version":"1.0"}', "config.json": b"{}"}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: d / name for name in files}


class FakeHub:
    def __init__(self, files, token=None):
        self.token, self.requests = token, []
        routes = {
            f"/{REPO}/resolve/main/onnx/model.onnx": files["model.onnx"],
            f"/{REPO}/resolve/main/tokenizer.json": files["tokenizer.json"],
            f"/{REPO}/resolve/main/config.json": files["config.json"],
        }
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                hub.requests.append((self.path, self.headers.get("Authorization")))
                cdn = self.path.startswith("/cdn/")
                if hub.token and not cdn and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.send_error(401)
                # The real hub redirects large files to a CDN; make curl follow one.
                if not cdn and self.path.endswith("/onnx/model.onnx"):
                    self.send_response(302)
                    self.send_header("Location", "/cdn" + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path = self.path.removeprefix("/cdn")
                if path not in routes:
                    return self.send_error(404)
                data = Path(routes[path]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def closed_port():
    """A port that refuses connections: bound, never listening, held for the test."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def run_setup(tmp_path, *args, **env):
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SECONDPASS_", "HF_", "ORT_"))}
    base.update(SECONDPASS_LOCAL_DIR=str(tmp_path / ".local"),
                SECONDPASS_SHARED_MODELS=str(tmp_path / "no-shared-models"))
    base.update(env)
    return subprocess.run(["bash", str(SCRIPT), "--no-ort", *args], env=base, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_hub_download_byte_identical_and_idempotent(tmp_path, model_files):
    with FakeHub(model_files, token=TOKEN) as hub:
        env = dict(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, SECONDPASS_PREFER_HUB="1")
        r = run_setup(tmp_path, "--hf-repo", REPO, **env)
        assert r.returncode == 0, r.stdout + r.stderr
        dest = tmp_path / ".local" / "models" / "test-model"
        for name, src in model_files.items():
            assert (dest / name).is_file() and not (dest / name).is_symlink()
            assert digest(dest / name) == digest(src), name
        # The optional quantized file 404s: tolerated, and not left behind half-made.
        assert not (dest / "model_int8.onnx").exists()
        assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.onnx", "tokenizer.json"]
        assert (tmp_path / ".local" / "models" / "DEFAULT").read_text().strip() == str(dest)
        # Every hub request carried the token (the CDN redirect target needs none).
        assert all(auth == f"Bearer {TOKEN}" for path, auth in hub.requests if not path.startswith("/cdn"))
        assert any(p.endswith("/onnx/model.onnx") for p, _ in hub.requests)

        # A second run finds everything in place and asks the hub nothing.
        hub.requests.clear()
        r = run_setup(tmp_path, "--hf-repo", REPO, **env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert hub.requests == []


def test_hub_rejects_missing_token(tmp_path, model_files):
    with FakeHub(model_files, token=TOKEN) as hub:
        r = run_setup(tmp_path, "--hf-repo", REPO, HF_ENDPOINT=hub.endpoint)
    assert r.returncode != 0
    assert "401" in r.stderr
    assert not (tmp_path / ".local" / "models" / "DEFAULT").exists()


def test_unreachable_hub_and_no_shared_model_fails_clearly(tmp_path, closed_port):
    r = run_setup(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}",
                  SECONDPASS_SHARED_MODELS="/nonexistent")
    assert r.returncode != 0
    err = r.stderr
    assert "Tried:" in err
    assert f"127.0.0.1:{closed_port}/cross-encoder/ms-marco-MiniLM-L-6-v2" in err  # the hub
    assert "/nonexistent/cranfield-minilm-l6-ce not found" in err                  # the shared model
    assert "--model-dir" in err                                                    # how to fix it
    assert not (tmp_path / ".local" / "models" / "DEFAULT").exists()


def test_explicit_repo_is_not_substituted(tmp_path, closed_port, model_files):
    """--hf-repo failing must not quietly fall back to the shared model."""
    shared = tmp_path / "shared-models" / "cranfield-minilm-l6-ce"
    shared.mkdir(parents=True)
    for name, src in model_files.items():
        (shared / name).symlink_to(src)
    r = run_setup(tmp_path, "--hf-repo", REPO, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}",
                  SECONDPASS_SHARED_MODELS=str(shared.parent))
    assert r.returncode != 0
    assert REPO in r.stderr
    # ...whereas with nothing explicit, an unreachable preferred hub falls through to it.
    r = run_setup(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}",
                  SECONDPASS_SHARED_MODELS=str(shared.parent), SECONDPASS_PREFER_HUB="1")
    assert r.returncode == 0, r.stdout + r.stderr
    link = tmp_path / ".local" / "models" / "cranfield-minilm-l6-ce"
    assert link.is_symlink() and link.resolve() == shared.resolve()


def test_shared_model_is_default_without_touching_hub(tmp_path, closed_port, model_files):
    shared = tmp_path / "shared-models" / "cranfield-minilm-l6-ce"
    shared.mkdir(parents=True)
    for name, src in model_files.items():
        (shared / name).symlink_to(src)
    # The hub endpoint refuses connections; success proves it was not needed.
    r = run_setup(tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{closed_port}",
                  SECONDPASS_SHARED_MODELS=str(shared.parent))
    assert r.returncode == 0, r.stdout + r.stderr
    default = (tmp_path / ".local" / "models" / "DEFAULT").read_text().strip()
    assert default == str(tmp_path / ".local" / "models" / "cranfield-minilm-l6-ce")


@pytest.mark.parametrize("layout", ["hf", "flat"])
def test_model_dir(tmp_path, model_files, layout):
    src = tmp_path / "my-reranker"
    (src / "onnx").mkdir(parents=True)
    onnx = src / ("onnx/model.onnx" if layout == "hf" else "model.onnx")
    onnx.symlink_to(model_files["model.onnx"])
    for name in ("tokenizer.json", "config.json"):
        (src / name).write_bytes(Path(model_files[name]).read_bytes())
    if layout == "flat":
        (src / "model_int8.onnx").write_bytes(b"int8 stand-in")
    r = run_setup(tmp_path, "--model-dir", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    dest = tmp_path / ".local" / "models" / "my-reranker"
    for name, orig in model_files.items():
        assert digest(dest / name) == digest(orig), name
    assert (dest / "model_int8.onnx").exists() == (layout == "flat")
    assert (tmp_path / ".local" / "models" / "DEFAULT").read_text().strip() == str(dest)
    # Also via the environment variable, and idempotently.
    r = run_setup(tmp_path, SECONDPASS_MODEL_DIR=str(src))
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_dir_without_model_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    r = run_setup(tmp_path, "--model-dir", str(tmp_path / "empty"))
    assert r.returncode != 0
    assert "neither model.onnx nor onnx/model.onnx" in r.stderr


def path_without(tmp_path, *names):
    """A PATH directory with every command of the system's but `names`, and a fake
    apt-get (and sudo) that "installs" a package by creating its command, logging calls."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for f in Path(d).iterdir() if Path(d).is_dir() else ():
            if f.name not in names and not (farm / f.name).exists():
                (farm / f.name).symlink_to(f)
    log = tmp_path / "apt.log"
    for fake, body in {
        "apt-get": f'echo "$*" >> {log}\n[ "$1" = install ] || exit 0\n'
                   'for a in "$@"; do case "$a" in -*|install) ;; *) '
                   f'printf "#!/bin/sh\\n" > {farm}/"$a"; chmod +x {farm}/"$a";; esac; done\n',
        "sudo": 'exec "$@"\n',
    }.items():
        (farm / fake).unlink(missing_ok=True)
        (farm / fake).write_text("#!/bin/sh\n" + body)
        (farm / fake).chmod(0o755)
    return str(farm), log


def test_test_tools_are_installed_when_missing(tmp_path):
    """--test-tools installs each command the tests shell out to that is not on PATH."""
    r = run_setup(tmp_path, "--no-model", "--test-tools")
    assert r.returncode == 0, r.stderr
    assert "test tools: zstd gzip curl unshare on PATH" in r.stdout
    path, log = path_without(tmp_path, "zstd", "curl")
    r = run_setup(tmp_path, "--no-model", "--test-tools", PATH=path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert log.read_text().split() == ["install", "-y", "-qq", "--no-install-recommends", "zstd", "curl"]
    assert "test tools: zstd gzip curl unshare on PATH" in r.stdout
    # a package that cannot be installed fails setup, naming it
    (Path(path) / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    (Path(path) / "zstd").unlink()
    r = run_setup(tmp_path, "--no-model", "--test-tools", PATH=path)
    assert r.returncode != 0 and "apt-get install zstd failed" in r.stderr, r.stderr
