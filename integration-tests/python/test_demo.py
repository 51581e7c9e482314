"""scripts/demo, as the README's Quickstart runs it (against the suite's real Qdrant, with
the binary scripts/test built): its left column is Qdrant's own top 10, its right column
comes from Qdrant's pool reranked, each hit shows its judged relevance, the nDCG@10 it
prints is the one the columns give, the README's Quickstart shows the same table, it leaves
a secondpass running that reranks the collection, and `scripts/demo stop` ends it."""

import contextlib
import json
import os
import re
import subprocess
import sys

from support import CRANFIELD, ROOT, TARGET, bm25, cranfield_qrels, http_json, ndcg, real_qdrant, require_qdrant

sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402  (scripts/demo.py: the table's widths, the pool, the default query)

COLUMN = 5 + 1 + 3 + 1 + 7 + 2 + demo.WIDTH  # id, rel, score, title


def running(pid):
    """Alive and not a zombie (the demo's secondpass is no child of ours: init reaps it)."""
    try:
        return "\tZ" not in open(f"/proc/{pid}/status").read().split("State:")[1].split("\n")[0]
    except FileNotFoundError:
        return False


def table(text):
    """The printed rows as (id, rel) pairs: Qdrant's column, secondpass's column."""
    rows = [line for line in text.splitlines() if re.match(r"\s*\d+ +\d+ +(\d|-) ", line)]
    left, right = [], []
    for line in rows:
        a, b = line[6:6 + COLUMN].split(), line[6 + COLUMN + 2:].split()
        left.append((int(a[0]), a[1]))
        right.append((int(b[0]), b[1]))
    return left, right


def test_demo_shows_both_rankings_and_leaves_secondpass_running(tmp_path):
    require_qdrant()
    with real_qdrant() as (qdrant, grpc):
        collection = f"cranfield_demo_{os.getpid()}"
        env = dict(os.environ, QDRANT_URL=qdrant, QDRANT_GRPC_URL=grpc,
                   SECONDPASS_BIN=str(TARGET / "secondpass"), SECONDPASS_DEMO_DIR=str(tmp_path))
        cmd = ["bash", str(ROOT / "scripts" / "demo")]
        try:
            out = subprocess.run([*cmd, "--collection", collection], env=env, capture_output=True,
                                 text=True, timeout=600)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
            text = out.stdout
            assert "rerank status applied" in text, text
            left, right = table(text)
            assert len(left) == len(right) == 10, text

            qid = demo.DEFAULT_QUERY
            with open(CRANFIELD / "queries.jsonl") as f:
                query = next(q["text"] for q in map(json.loads, f) if q["id"] == qid)
            body = {**demo.query_body(query), "with_payload": False}
            bm25_order = [p["id"] for p in http_json(
                "POST", f"{qdrant}/collections/{collection}/points/query", {**body, "limit": demo.POOL})["result"]["points"]]
            assert [i for i, _ in left] == bm25_order[:10], "the left column is not Qdrant's own top 10"
            assert {i for i, _ in right} <= set(bm25_order), "a reranked hit from outside Qdrant's pool"
            assert [i for i, _ in right] != [i for i, _ in left], "the reranker changed nothing"

            grades = cranfield_qrels()[qid]
            for doc, rel in left + right:
                assert rel == str(grades.get(doc, "-")), f"document {doc}: printed relevance {rel}"
            before, after = map(float, re.search(r"nDCG@10\s+([\d.]+)\s+([\d.]+)", text).groups())
            assert abs(before - ndcg([i for i, _ in left], grades)) < 1e-3
            assert abs(after - ndcg([i for i, _ in right], grades)) < 1e-3
            # The shared model was fine-tuned on Cranfield: on the default query it must help.
            assert after > before, text
            readme = (ROOT / "README.md").read_text()
            assert table(readme) == (left, right), "README's demo output is not what scripts/demo prints"
            assert re.search(r"nDCG@10\s+([\d.]+)\s+([\d.]+)", readme).groups() == (f"{before:.3f}", f"{after:.3f}")

            proxy = re.search(r"secondpass\s+REST (http://\S+)", text).group(1)
            answer = http_json("POST", f"{proxy}/collections/{collection}/points/query",
                               {"query": bm25("heat transfer from cylinders"), "using": "bm25", "limit": 3},
                               timeout=300)
            assert answer["rerank"]["status"] == "applied", answer
            pid = int((tmp_path / "secondpass.pid").read_text())
        finally:
            stop = subprocess.run([*cmd, "stop"], env=env, capture_output=True, text=True, timeout=60)
            with contextlib.suppress(Exception):
                http_json("DELETE", f"{qdrant}/collections/{collection}")
        assert stop.returncode == 0, stop.stderr
        assert not running(pid), "secondpass still running after scripts/demo stop"
        assert not (tmp_path / "secondpass.pid").exists()


def test_demo_names_the_missing_grpc_url(tmp_path):
    env = dict(os.environ, QDRANT_URL="http://127.0.0.1:1", SECONDPASS_DEMO_DIR=str(tmp_path))
    env.pop("QDRANT_GRPC_URL", None)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "demo")], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "QDRANT_GRPC_URL is not" in out.stderr, out.stderr
