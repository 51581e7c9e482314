#!/usr/bin/env python3
"""PyTorch pairs/s of the shared cross-encoder, the side scripts/bench/gpu_check.sh
compares secondpass with: fp16 eager (and torch.compile where it builds) on the same
weights, the same text and the same card.

    torch_gpu.py --model DIR [--device cuda|cpu] [--lengths 128,256]
                 [--batches 16,64,256,1024] [--seconds 3] [--compile-batches 256]

DIR is a Hugging Face model folder (config.json, model.safetensors, tokenizer). Text:
the first Cranfield query with abstracts joined into documents of at least 300
words, as the Rust bench does, so every pair fills the length. Inputs are tokenized
and copied to the device once, outside the timed loop: the numbers are the model's
forward pass alone, PyTorch's best case (secondpass's numbers include tokenizing).
Prints one `torch impl=... max_len=... batch=... | pairs_per_s=...` line per point.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("SECONDPASS_SHARED_DIR", ROOT.parent / "shared"))


def corpus(n, eval_dir):
    texts = lambda f: [json.loads(l)["text"] for l in (eval_dir / f).read_text().splitlines()]
    docs, cur = [], []
    for t in texts("corpus.jsonl"):
        cur.append(t)
        if len(" ".join(cur).split()) >= 300:
            docs.append(" ".join(cur))
            cur = []
            if len(docs) == n:
                break
    if len(docs) < n:  # fewer long documents than asked: repeat them
        docs = (docs * (n // max(1, len(docs)) + 1))[:n]
    return texts("queries.jsonl")[0], docs


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--lengths", default="128,256")
    p.add_argument("--batches", default="16,64,256,1024")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--compile-batches", default="256", help="batches to try torch.compile at ('' for none)")
    p.add_argument("--eval-dir", default=os.environ.get("SECONDPASS_EVAL_DIR", SHARED / "eval" / "cranfield-train"))
    a = p.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dev = torch.device(a.device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    tok = AutoTokenizer.from_pretrained(a.model)
    try:  # transformers 5 names it dtype; 4.x torch_dtype
        model = AutoModelForSequenceClassification.from_pretrained(a.model, dtype=dtype)
    except TypeError:
        model = AutoModelForSequenceClassification.from_pretrained(a.model, torch_dtype=dtype)
    model = model.to(dev).eval()
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"# torch {torch.__version__}, {name}, dtype {dtype}, attention {model.config._attn_implementation}", flush=True)
    batches = [int(b) for b in a.batches.split(",")]
    query, docs = corpus(max(batches), Path(a.eval_dir))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def measure(fn, inputs, batch):
        with torch.inference_mode():
            for _ in range(3):
                fn(**inputs)
            sync()
            n, start = 0, time.perf_counter()
            while True:
                fn(**inputs)
                n += 1
                if n % 4 == 0:
                    sync()
                    if time.perf_counter() - start >= a.seconds:
                        break
            sync()
            return batch * n / (time.perf_counter() - start)

    for length in (int(x) for x in a.lengths.split(",")):
        for batch in batches:
            enc = tok([query] * batch, docs[:batch], truncation="only_second", max_length=length,
                      padding="max_length", return_tensors="pt")
            inputs = {k: v.to(dev) for k, v in enc.items()}
            rate = measure(model, inputs, batch)
            print(f"torch impl=eager dtype={str(dtype).split('.')[-1]} max_len={length} batch={batch} | pairs_per_s={rate:.1f}", flush=True)
            if str(batch) in a.compile_batches.split(","):
                try:
                    t = time.perf_counter()
                    compiled = torch.compile(model)
                    with torch.inference_mode():
                        compiled(**inputs)
                    built = time.perf_counter() - t
                    rate = measure(compiled, inputs, batch)
                    print(f"torch impl=compile dtype={str(dtype).split('.')[-1]} max_len={length} batch={batch} "
                          f"| pairs_per_s={rate:.1f} compile_s={built:.1f}", flush=True)
                except Exception as e:  # a compile that does not build is a result, not a failure
                    print(f"torch impl=compile max_len={length} batch={batch} | failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
    if dev.type == "cuda":
        print(f"torch max_memory_allocated_mib={torch.cuda.max_memory_allocated(dev) / 2**20:.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
