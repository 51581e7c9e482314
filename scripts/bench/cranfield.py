"""Shared pieces of the Cranfield quality scripts: data, the tune/held-out split,
nDCG@10, and loading the corpus into a real Qdrant with server-side BM25."""

import json
import math
import sys
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
EVAL = SHARED / "eval" / "cranfield-train"
MODEL_DIR = SHARED / "models" / "cranfield-minilm-l6-ce"
sys.path.insert(0, str(ROOT / "integration-tests" / "python"))
from support import cranfield_qrels  # noqa: E402


def load():
    corpus = [json.loads(l) for l in open(EVAL / "corpus.jsonl")]
    queries = [json.loads(l) for l in open(EVAL / "queries.jsonl")]
    qrels = cranfield_qrels()
    queries = [q for q in queries if q["id"] in qrels]
    return corpus, queries, qrels


def split(queries):
    """Tune on queries at even positions (by id), report on the others (held out)."""
    queries = sorted(queries, key=lambda q: q["id"])
    return queries[0::2], queries[1::2]


def ndcg10(ranked, gains):
    dcg = sum((2 ** gains.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted(gains.values(), reverse=True)[:10]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def create(base, corpus, s=None):
    """Creates the collection at `base` (a Qdrant or secondpass collection URL) with a
    BM25 sparse vector (modifier idf, server-side inference) and loads the corpus."""
    s = s or requests.Session()
    s.delete(base, timeout=30)
    s.put(base, json={"vectors": {"dense": {"size": 4, "distance": "Cosine"}},
                      "sparse_vectors": {"bm25": {"modifier": "idf"}}}, timeout=30).raise_for_status()
    for i in range(0, len(corpus), 200):
        points = [{"id": d["id"],
                   "vector": {"dense": [1.0, 0.0, 0.0, 0.0],
                              "bm25": {"text": d["title"] + " " + d["text"], "model": "qdrant/bm25"}},
                   "payload": {"text": d["text"], "title": d["title"]}}
                  for d in corpus[i:i + 200]]
        s.put(f"{base}/points?wait=true", json={"points": points}, timeout=120).raise_for_status()


def bm25(base, text, limit, s=None, headers=None, extra=None):
    s = s or requests.Session()
    body = {"query": {"text": text, "model": "qdrant/bm25"}, "using": "bm25", "limit": limit}
    body.update(extra or {})
    r = s.post(f"{base}/points/query", json=body, headers=headers or {}, timeout=300)
    r.raise_for_status()
    return r.json()
