"""End-to-end quality on Cranfield through secondpass (scripts/eval.py): reranking the
BM25 top 50 must raise nDCG@10. The model was fine-tuned on these queries, so this
proves the mechanics (the right text, query and order reach the client), not quality."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_reranking_raises_ndcg_on_cranfield():
    spec = importlib.util.spec_from_file_location("eval_script", ROOT / "scripts" / "eval.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.run(queries_n=20, pool=50, model_file="model_int8.onnx")
    assert result["reranked"] > result["qdrant"] + 0.05, result
