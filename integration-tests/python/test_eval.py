"""`secondpass eval` on Cranfield through a real Qdrant (server-side BM25), pool 30, the
shared model at max_length 128: the reranked nDCG@10 it reports must equal an offline
rerank of the same candidates computed here (onnxruntime + tokenizers), and Qdrant's own
nDCG@10 must equal the one computed here from Qdrant's order. Also: unknown qrels ids
are counted, malformed input names file and line, the HTML report, and judging a
shadow log. The model was fine-tuned on these queries: this proves mechanics."""

import importlib.util
import json
import math
import os
import subprocess

import pytest
import requests

from support import ROOT, TARGET, base_config, model_scores, real_qdrant, require_qdrant

spec = importlib.util.spec_from_file_location("eval_script", ROOT / "scripts" / "eval.py")
cranfield = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cranfield)

N_QUERIES = 20
POOL = 30


def ndcg(ranked, grades, k=10):
    """Linear gain, log2 discount, ideal from every judged document of the query."""
    dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


@pytest.fixture(scope="module")
def cranfield_setup(tmp_path_factory):
    require_qdrant()
    with real_qdrant() as (qdrant, _grpc):
        coll = f"cranfield_eval_{os.getpid()}"
        cranfield.load_collection(qdrant, coll)
        tmp = tmp_path_factory.mktemp("eval")
        qpath, rpath, queries = cranfield.write_inputs(tmp, N_QUERIES)
        config = tmp / "secondpass.toml"
        config.write_text(base_config(qdrant))
        yield qdrant, coll, tmp, qpath, rpath, queries, config
        requests.delete(f"{qdrant}/collections/{coll}", timeout=30)


def qrels_of(rpath):
    out = {}
    for line in open(rpath):
        q, _, d, g = line.split()
        out.setdefault(q, {})[d] = int(g)
    return out


def test_eval_matches_an_offline_rerank_of_the_same_candidates(cranfield_setup):
    qdrant, coll, tmp, qpath, rpath, queries, config = cranfield_setup
    qrels = qrels_of(rpath)
    # one unknown query id and one unknown point id: counted, not fatal
    with_unknown = tmp / "qrels_unknown.txt"
    with_unknown.write_text(open(rpath).read() + "99999 0 1 2\n1 0 987654 1\n")
    report = tmp / "report.html"
    proc = cranfield.run_eval(config, coll, qpath, with_unknown,
                              ["--pools", str(POOL), "--k", "10", "--json", "--report", str(report)])
    out = json.loads(proc.stdout)
    assert out["queries"] == N_QUERIES
    assert out["input"]["qrels_unknown_queries"] == 1
    assert out["input"]["qrels_unknown_points"] == 1
    by_name = {c["name"]: c for c in out["configs"]}
    reranked = by_name[f"local@{POOL}"]
    assert reranked["not_reranked"] == 0

    # offline: the same BM25 candidates, scored by the model outside secondpass
    mine_qdrant, mine_reranked = [], []
    for q in queries:
        body = dict(cranfield.bm25_search(q["text"]), limit=POOL, with_payload=["text"])
        points = requests.post(f"{qdrant}/collections/{coll}/points/query", json=body,
                               timeout=60).json()["result"]["points"]
        ids = [str(p["id"]) for p in points]
        scores = model_scores(q["text"], [p["payload"]["text"] for p in points])
        order = [i for _, i in sorted(zip(scores, ids), key=lambda t: -t[0])]
        grades = qrels[str(q["id"])]
        mine_qdrant.append(ndcg(ids, grades))
        mine_reranked.append(ndcg(order, grades))
    offline_qdrant = sum(mine_qdrant) / len(mine_qdrant)
    offline_reranked = sum(mine_reranked) / len(mine_reranked)
    assert abs(by_name["qdrant"]["metrics"]["ndcg"] - offline_qdrant) < 1e-9, (by_name["qdrant"], offline_qdrant)
    assert abs(reranked["metrics"]["ndcg"] - offline_reranked) <= 0.005, (reranked, offline_reranked)
    # and the comparison is reported with its test and latency
    v = reranked["vs_qdrant"]
    assert v["wins"] + v["ties"] + v["losses"] == N_QUERIES
    assert 0 < v["p_value"] <= 1 and v["ci95"][0] <= v["delta_ndcg"] <= v["ci95"][1]
    assert reranked["rerank_latency"]["p95_ms"] >= reranked["rerank_latency"]["p50_ms"] > 0
    html = report.read_text()
    assert "<svg" in html and f"local@{POOL}" in html and "<script" not in html


def test_bad_input_names_the_file_and_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(base_config())
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": 1, "text": "a", "search": {}}\n{"id": 2, "text": \n')
    qrels = tmp_path / "r.txt"
    qrels.write_text("1 0 5 1\n")
    cmd = [str(TARGET / "secondpass"), "eval", "--config", str(config), "--collection", "c",
           "--queries", str(queries), "--qrels", str(qrels)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert f"{queries}:2: not JSON" in proc.stderr, proc.stderr
    qrels.write_text("1 0 5 1\n1 0 6 lots\n")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and f"{qrels}:2: grade `lots` is not an integer" in proc.stderr, proc.stderr


def test_shadow_log_is_judged_against_qrels(tmp_path):
    log = tmp_path / "shadow.jsonl"
    entries = [
        {"query": "first", "qdrant_ids": [3, 1], "reranked_ids": [1, 3], "rerank_ms": 5.0},
        {"query": "second", "qdrant_ids": [7, 8], "reranked_ids": [7, 8], "rerank_ms": 7.0},
        {"query": "never judged", "qdrant_ids": [1], "reranked_ids": [1]},
    ]
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"id": "a", "text": "first", "search": {}}\n{"id": "b", "text": "second", "search": {}}\n')
    qrels = tmp_path / "r.txt"
    qrels.write_text("a 0 1 2\nb 0 8 1\n")
    proc = subprocess.run([str(TARGET / "secondpass"), "eval", "--collection", "c", "--shadow-log", str(log),
                           "--queries", str(queries), "--qrels", str(qrels), "--json"],
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout)
    assert out["queries"] == 2 and out["input"]["queries_without_qrels"] == 1
    q, s = out["configs"]
    assert abs(q["metrics"]["ndcg"] - (ndcg(["3", "1"], {"1": 2}) + ndcg(["7", "8"], {"8": 1})) / 2) < 1e-9
    assert abs(s["metrics"]["ndcg"] - (1.0 + ndcg(["7", "8"], {"8": 1})) / 2) < 1e-9
    assert (s["vs_qdrant"]["wins"], s["vs_qdrant"]["ties"], s["vs_qdrant"]["losses"]) == (1, 1, 0)
    assert s["rerank_latency"]["p50_ms"] == 6.0
