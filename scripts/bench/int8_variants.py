"""Which int8 settings rank most like fp32 on this CPU? (BENCHMARKS.md, "Quantization")

Quantizes the shared cross-encoder with each dynamic-int8 variant of ONNX Runtime's
quantize_dynamic and compares every file with fp32 on what users see: the 16 reference
pairs (max |logit diff|, Spearman) and judged Cranfield queries x 50 candidates (the
documents sharing most words with the query): Spearman per query and nDCG@10 of both
rankings. Dynamic int8 kernels differ between CPUs (AVX2-only hosts multiply u8 x s8 with
saturation, AVX-512 VNNI hosts do not), so run it on each CPU kind and say which.

  .local/venv/bin/python scripts/bench/int8_variants.py [--queries 40] [--only NAME,...]

Needs scripts/setup --python and ../shared (or SECONDPASS_SHARED_DIR). Writes the
variant files to a temporary folder. Prints one line per file.
"""

import argparse
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))
MODEL = SHARED / "models/cranfield-minilm-l6-ce"
EVAL = SHARED / "eval/cranfield-train"

VARIANTS = {
    "default": dict(),
    "per_channel": dict(per_channel=True),
    "reduce_range": dict(reduce_range=True),
    "per_channel+reduce_range": dict(per_channel=True, reduce_range=True),
    "U8U8": dict(weight_type=QuantType.QUInt8),
    "U8U8 per_channel": dict(weight_type=QuantType.QUInt8, per_channel=True),
}
STOP = set(
    "the and for are what which with that this from has have been can how any there does "
    "not its was were such when into also than their these those".split()
)


def words(t):
    return {w.lower() for w in re.split(r"[^0-9A-Za-z]+", t) if len(w) > 2 and w.lower() not in STOP}


def load(n_queries):
    rows = lambda f: [json.loads(l) for l in open(EVAL / f)]
    qrels = {}
    for line in open(EVAL / "qrels.tsv").read().split("\n")[1:]:
        if line.strip():
            q, d, g = line.split("\t")
            qrels.setdefault(int(q), {})[int(d)] = int(g)
    docs = [(d["id"], (d.get("title", "") + " " + d["text"]).strip()) for d in rows("corpus.jsonl")]
    dw = [words(t) for _, t in docs]
    pools = []
    for q in [q for q in rows("queries.jsonl") if q["id"] in qrels][:n_queries]:
        qw = words(q["text"])
        best = sorted(range(len(docs)), key=lambda i: (-len(qw & dw[i]), i))[:50]
        pools.append((q["id"], q["text"], [docs[i] for i in best]))
    return qrels, pools


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--queries", type=int, default=40)
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    a = p.parse_args()
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    tok.enable_truncation(128, strategy="only_second")
    qrels, pools = load(a.queries)
    ref = json.load(open(MODEL / "reference.json"))

    def scores(path):
        o = ort.SessionOptions()
        o.intra_op_num_threads = os.cpu_count() or 1
        s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

        def run(q, ds):
            enc = tok.encode_batch([(q, d) for d in ds])
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), width), np.int64)
            mask, types = np.zeros_like(ids), np.zeros_like(ids)
            for i, e in enumerate(enc):
                n = len(e.ids)
                ids[i, :n], mask[i, :n], types[i, :n] = e.ids, 1, e.type_ids
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            return s.run(None, feeds)[0][:, 0]

        refs = [float(run(r["query"], [r["document"]])[0]) for r in ref]
        return refs, [run(q, [t for _, t in ds]) for _, q, ds in pools]

    def ndcg(qid, order, k=10):
        g = qrels.get(qid, {})
        dcg = sum(g.get(d, 0) / math.log2(i + 2) for i, d in enumerate(order[:k]))
        ideal = sorted(g.values(), reverse=True)[:k]
        idcg = sum(v / math.log2(i + 2) for i, v in enumerate(ideal))
        return dcg / idcg if idcg else 0.0

    def mean_ndcg(runs):
        return float(np.mean([ndcg(qid, [ds[i][0] for i in np.argsort(-s)]) for (qid, _, ds), s in zip(pools, runs)]))

    base = scores(MODEL / "model.onnx")
    n32 = mean_ndcg(base[1])
    print(f"fp32: nDCG@10 {n32:.4f} over {len(pools)} queries x 50 candidates")

    def report(name, path):
        t = time.time()
        refs, runs = scores(path)
        diff = max(abs(x - y) for x, y in zip(refs, base[0]))
        sp = [spearman(x, y) for x, y in zip(runs, base[1])]
        n = mean_ndcg(runs)
        print(
            f"{name:26s} ref max|d| {diff:.3f} ref Spearman {spearman(refs, base[0]):.3f} "
            f"pools Spearman mean {np.mean(sp):.4f} min {np.min(sp):.4f} "
            f"nDCG@10 {n:.4f} ({100 * (n - n32) / n32:+.2f}%) {time.time() - t:.0f}s",
            flush=True,
        )

    if (MODEL / "model_int8.onnx").exists():
        report("shipped model_int8.onnx", MODEL / "model_int8.onnx")
    only = set(a.only.split(",")) if a.only else set(VARIANTS)
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in VARIANTS.items():
            if name not in only:
                continue
            out = Path(tmp) / (re.sub(r"\W+", "_", name) + ".onnx")
            kw = {"weight_type": QuantType.QInt8, **kw}
            quantize_dynamic(str(MODEL / "model.onnx"), str(out), **kw)
            report(name, out)


if __name__ == "__main__":
    main()
