"""secondpass as a rerank server: the official Python `cohere` SDK (v2 and v1 clients)
and a TEI-shaped request against a running secondpass with the shared model. The
expected order comes from an independent scorer (Python onnxruntime)."""

import cohere
import pytest
import requests

from support import base_config, model_scores, start_secondpass

QUERY = "what similarity laws must be obeyed when constructing aeroelastic models"
DOCS = [
    "the boundary layer on a flat plate in supersonic flow",
    "aeroelastic models of heated high speed aircraft must obey similarity laws",
    "a note on the buckling of thin cylindrical shells under axial compression",
    "similarity laws for aerothermoelastic testing of models",
    "the effect of sweep on the lift of wings at low speed",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "secondpass.toml"
    cfg.write_text(base_config() + "[rerank_api]\nenabled = true\n")
    proc, addrs = start_secondpass(cfg)
    yield f"http://{addrs['rest']}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def expected():
    scores = model_scores(QUERY, DOCS)
    order = sorted(range(len(DOCS)), key=lambda i: -scores[i])
    return order, scores


def test_cohere_v2_sdk(server, expected):
    order, scores = expected
    co = cohere.ClientV2(api_key="unused", base_url=server)
    res = co.rerank(model="secondpass-local", query=QUERY, documents=DOCS, top_n=3)
    assert [r.index for r in res.results] == order[:3]
    for r in res.results:
        assert abs(r.relevance_score - scores[r.index]) < 1e-4


def test_cohere_v1_sdk_with_documents(server, expected):
    order, _ = expected
    co = cohere.Client(api_key="unused", base_url=server)
    res = co.rerank(model="secondpass-local", query=QUERY, documents=DOCS, return_documents=True)
    assert [r.index for r in res.results] == order
    assert res.results[0].document.text == DOCS[order[0]]


def test_cohere_sdk_sees_api_errors(server):
    co = cohere.ClientV2(api_key="unused", base_url=server)
    with pytest.raises(cohere.errors.BadRequestError):
        co.rerank(model="m", query=QUERY, documents=[])


def test_tei_shape(server, expected):
    order, scores = expected
    r = requests.post(f"{server}/rerank", json={"query": QUERY, "texts": DOCS, "return_text": True}, timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert [x["index"] for x in body] == order
    assert abs(body[0]["score"] - scores[order[0]]) < 1e-4
    assert body[0]["text"] == DOCS[order[0]]
    r = requests.post(f"{server}/rerank", json={"query": QUERY, "texts": []}, timeout=30)
    assert r.status_code == 422
    assert r.json()["error_type"] == "Validation"
