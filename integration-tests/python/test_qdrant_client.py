"""The real Python qdrant-client (REST) through secondpass.

secondpass (target/debug/secondpass) runs on port 0 in front of the Qdrant double
(target/debug/qdrant-double), or in front of a real Qdrant when QDRANT_URL is set.
The query text travels in a per-request header (qdrant_client.context_headers). The
expected order comes from an independent scorer: the same ONNX model through Python's
onnxruntime and Hugging Face tokenizers.
"""

import json
import os
import uuid
from urllib.parse import quote

import pytest
from qdrant_client import QdrantClient, models
from qdrant_client.context_headers import headers

from support import SHARED, TARGET, base_config, model_scores, start, start_secondpass

QUERY = "capital of Germany"
VECTOR = [0.2, 0.1, 0.9, 0.7]


def recorded(name):
    with open(SHARED / "qdrant" / "recordings-v1.18.3" / "rest.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if r["name"] == name:
                return r["request"]
    raise KeyError(name)


@pytest.fixture(scope="module")
def upstream():
    """(REST URL, gRPC URL) of a real Qdrant when QDRANT_URL/QDRANT_GRPC_URL are set,
    else of the double."""
    url = os.environ.get("QDRANT_URL")
    if url:
        yield url.rstrip("/"), os.environ.get("QDRANT_GRPC_URL", "http://127.0.0.1:1").rstrip("/")
        return
    proc, _ = start([str(TARGET / "qdrant-double"), "--grpc-addr", "127.0.0.1:0"], "listening on ")
    rest = _.removeprefix("listening on ")
    grpc = proc.stdout.readline().strip().removeprefix("grpc listening on ")
    yield rest, grpc
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def collection():
    return f"pyclient_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def proxy(upstream, collection, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "secondpass.toml"
    cfg.write_text(base_config(*upstream) + f"[collections.{collection}]\nenabled = true\n")
    proc, addrs = start_secondpass(cfg)
    yield addrs
    proc.terminate()
    assert proc.wait(timeout=30) == 0, "secondpass must exit cleanly on SIGTERM"


@pytest.fixture(scope="module")
def client(proxy, collection):
    api_key = os.environ.get("QDRANT_API_KEY")
    c = QdrantClient(url=f"http://{proxy['rest']}", api_key=api_key, https=False, timeout=30, check_compatibility=False)
    create = recorded("create-collection")["vectors"]
    c.create_collection(
        collection,
        vectors_config=models.VectorParams(size=create["size"], distance=models.Distance.COSINE),
    )
    points = recorded("upsert")["points"]
    c.upsert(
        collection,
        points=[models.PointStruct(id=p["id"], vector=p["vector"], payload=p["payload"]) for p in points],
        wait=True,
    )
    yield c
    c.delete_collection(collection)


def text_of(payload):
    t = (payload or {}).get("text")
    if isinstance(t, list):
        return "\n".join(x for x in t if isinstance(x, str)) or None
    return t or None


def expected_order(points):
    """Scored points by model score (stable), then those without text in Qdrant's order."""
    with_text = [p for p in points if text_of(p.payload)]
    scores = model_scores(QUERY, [text_of(p.payload) for p in with_text])
    ranked = sorted(zip(with_text, scores), key=lambda ps: -ps[1])
    rest = [p for p in points if not text_of(p.payload)]
    return [(p.id, s) for p, s in ranked] + [(p.id, None) for p in rest]


def test_query_points_is_reranked_as_the_model_says(client, collection):
    plain = client.query_points(collection, query=VECTOR, limit=100, with_payload=True).points
    assert plain[0].score > plain[-1].score  # Qdrant's order, no header: not reranked
    expected = expected_order(plain)
    assert [i for i, _ in expected] != [p.id for p in plain], "the model must change the order"

    with headers({"x-rerank-query": quote(QUERY)}):
        hits = client.query_points(collection, query=VECTOR, limit=4, with_payload=["title"]).points
    assert [h.id for h in hits] == [i for i, _ in expected[:4]]
    for h, (_, score) in zip(hits, expected):
        assert abs(h.score - score) < 1e-4, (h.id, h.score, score)
        assert set(h.payload) <= {"title"}, h.payload  # the text field asked for by secondpass is gone

    # offset pages through the reranked list
    with headers({"x-rerank-query": quote(QUERY)}):
        page = client.query_points(collection, query=VECTOR, limit=2, offset=2, with_payload=False).points
    assert [h.id for h in page] == [i for i, _ in expected[2:4]]
    assert all(h.payload is None for h in page)


def test_batch_and_header_scoping(client, collection):
    plain = client.query_points(collection, query=VECTOR, limit=100, with_payload=True).points
    expected = [i for i, _ in expected_order(plain)]
    reqs = [
        models.QueryRequest(query=VECTOR, limit=3),
        models.QueryRequest(query=VECTOR, limit=2, with_payload=True),
    ]
    with headers({"x-rerank-query": quote(QUERY)}):
        res = client.query_batch_points(collection, requests=reqs)
    assert [p.id for p in res[0].points] == expected[:3]
    assert [p.id for p in res[1].points] == expected[:2]
    assert "text" in res[1].points[0].payload
    # outside the `with` block the header is gone: Qdrant's order again
    again = client.query_points(collection, query=VECTOR, limit=3).points
    assert [p.id for p in again] == [p.id for p in plain[:3]]


def test_everything_else_passes_through(client, collection):
    info = client.get_collection(collection)
    assert info.points_count == 8
    assert client.count(collection).count == 8
    got = client.retrieve(collection, ids=[1, 2], with_payload=True)
    assert sorted(p.id for p in got) == [1, 2]
    records, _next = client.scroll(collection, limit=3, with_payload=False)
    assert len(records) == 3
    assert collection in [c.name for c in client.get_collections().collections]


@pytest.fixture(scope="module")
def grpc_client(proxy, client):
    """The same collection through secondpass's gRPC port (prefer_grpc=True)."""
    host, rest_port = proxy["rest"].rsplit(":", 1)
    grpc_port = int(proxy["grpc"].rsplit(":", 1)[1])
    c = QdrantClient(
        host=host,
        port=int(rest_port),
        grpc_port=grpc_port,
        prefer_grpc=True,
        api_key=os.environ.get("QDRANT_API_KEY"),
        https=False,
        timeout=30,
        check_compatibility=False,
    )
    yield c
    c.close()


def test_grpc_query_points_is_reranked(grpc_client, client, collection):
    plain = client.query_points(collection, query=VECTOR, limit=100, with_payload=True).points
    expected = expected_order(plain)
    with headers({"x-rerank-query": quote(QUERY)}):
        hits = grpc_client.query_points(collection, query=VECTOR, limit=3, with_payload=["title"]).points
    assert [h.id for h in hits] == [i for i, _ in expected[:3]]
    for h, (_, score) in zip(hits, expected):
        assert abs(h.score - score) < 1e-4
        assert set(h.payload) <= {"title"}
    # without the header: Qdrant's order through gRPC too
    again = grpc_client.query_points(collection, query=VECTOR, limit=3).points
    assert [p.id for p in again] == [p.id for p in plain[:3]]


def test_grpc_passes_everything_else(grpc_client, collection):
    assert grpc_client.count(collection).count == 8
    records, _ = grpc_client.scroll(collection, limit=2)
    assert len(records) == 2
    assert collection in [c.name for c in grpc_client.get_collections().collections]


def test_reranked_rest_answers_come_compressed(proxy, client, collection):
    import httpx

    r = httpx.post(
        f"http://{proxy['rest']}/collections/{collection}/points/query",
        json={"query": VECTOR, "limit": 3},
        headers={"x-rerank-query": quote(QUERY), "accept-encoding": "gzip"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in r.headers["vary"].lower()
    assert r.json()["rerank"]["status"] == "applied"
