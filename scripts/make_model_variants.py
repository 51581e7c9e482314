#!/usr/bin/env python3
"""Makes graph variants of a BERT cross-encoder ONNX file that look like other
published rerankers, to test that secondpass loads them:

  no-token-type-ids/  the graph takes only input_ids and attention_mask (like
                      XLM-RoBERTa rerankers, e.g. BAAI/bge-reranker-*); the
                      token type ids become zeros inside the graph, so its scores
                      differ from the original's: expected.json holds them, computed
                      by Python's onnxruntime on the original graph with zero type ids
  two-logits/         output logits [B, 2] = [0, logit] (two-class heads); the
                      positive-minus-negative score equals the original logit

Each output directory gets model.onnx plus the source's tokenizer.json and config.json.
Usage: make_model_variants.py SOURCE_MODEL_DIR OUT_DIR   (needs the `onnx` package)
"""

import shutil
import sys
from pathlib import Path

import json

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper
from tokenizers import Tokenizer


def without_token_type_ids(model):
    g = model.graph
    keep = [i for i in g.input if i.name != "token_type_ids"]
    del g.input[:]
    g.input.extend(keep)
    zero = helper.make_tensor("zero_i64", TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("Shape", ["input_ids"], ["input_ids_shape"], name="tti_shape"),
        helper.make_node("ConstantOfShape", ["input_ids_shape"], ["token_type_ids"], value=zero, name="tti_zeros"),
    ]
    for n in reversed(nodes):
        g.node.insert(0, n)
    return model


def two_logits(model):
    g = model.graph
    out = g.output[0]
    old = out.name
    for n in g.node:
        n.output[:] = [f"{old}_one" if o == old else o for o in n.output]
    g.node.extend([
        helper.make_node("Sub", [f"{old}_one", f"{old}_one"], [f"{old}_zero"], name="neg_class"),
        helper.make_node("Concat", [f"{old}_zero", f"{old}_one"], [old], axis=1, name="two_classes"),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(old, TensorProto.FLOAT, ["batch", 2]))
    return model


def expected_without_type_ids(src):
    """Logits of the original graph for reference.json's pairs with token_type_ids = 0."""
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    session = onnxruntime.InferenceSession(str(src / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    for p in json.loads((src / "reference.json").read_text()):
        e = tok.encode(p["query"], p["document"])
        ids = np.array([e.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        out.append({"query": p["query"], "document": p["document"], "logit": float(session.run(None, feeds)[0][0][0])})
    return out


def main(src, out):
    src, out = Path(src), Path(out)
    for name, edit in [("no-token-type-ids", without_token_type_ids), ("two-logits", two_logits)]:
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        model = edit(onnx.load(str(src / "model.onnx")))
        onnx.checker.check_model(model)
        onnx.save(model, str(d / "model.onnx"))
        for f in ["tokenizer.json", "config.json"]:
            shutil.copyfile(src / f, d / f)
        print(d)
    expected = expected_without_type_ids(src)
    (out / "no-token-type-ids" / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
