"""scripts/demo, as the README's Quickstart runs it (against the suite's real Qdrant, with
the binary scripts/test built): it prints Qdrant's and secondpass's top 10 side by side
with nDCG@10 of both, leaves a secondpass running that reranks the collection, and
`scripts/demo stop` ends it."""

import contextlib
import os
import re
import subprocess

from support import ROOT, TARGET, http_json, real_qdrant, require_qdrant


def running(pid):
    """Alive and not a zombie (the demo's secondpass is no child of ours: init reaps it)."""
    try:
        return "\tZ" not in open(f"/proc/{pid}/status").read().split("State:")[1].split("\n")[0]
    except FileNotFoundError:
        return False


def test_demo_shows_both_rankings_and_leaves_secondpass_running(tmp_path):
    require_qdrant()
    with real_qdrant() as (qdrant, grpc):
        collection = f"cranfield_demo_{os.getpid()}"
        env = dict(os.environ, QDRANT_URL=qdrant, QDRANT_GRPC_URL=grpc,
                   SECONDPASS_BIN=str(TARGET / "secondpass"), SECONDPASS_DEMO_DIR=str(tmp_path))
        demo = ["bash", str(ROOT / "scripts" / "demo")]
        try:
            out = subprocess.run([*demo, "--collection", collection], env=env, capture_output=True,
                                 text=True, timeout=600)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            text = out.stdout
            rows = [line for line in text.splitlines() if re.match(r"\s+\d+\s+\d+ ", line)]
            assert len(rows) == 10, text
            before, after = map(float, re.search(r"nDCG@10\s+([\d.]+)\s+([\d.]+)", text).groups())
            assert 0 <= before <= 1 and 0 <= after <= 1
            assert "rerank status applied" in text, text
            proxy = re.search(r"secondpass\s+REST (http://\S+)", text).group(1)
            body = {"query": {"text": "heat transfer from cylinders", "model": "qdrant/bm25"},
                    "using": "bm25", "limit": 3}
            answer = http_json("POST", f"{proxy}/collections/{collection}/points/query", body, timeout=300)
            assert answer["rerank"]["status"] == "applied", answer
            pid = int((tmp_path / "secondpass.pid").read_text())
        finally:
            stop = subprocess.run([*demo, "stop"], env=env, capture_output=True, text=True, timeout=60)
            with contextlib.suppress(Exception):
                http_json("DELETE", f"{qdrant}/collections/{collection}")
        assert stop.returncode == 0, stop.stderr
        assert not running(pid), "secondpass still running after scripts/demo stop"
        assert not (tmp_path / "secondpass.pid").exists()
