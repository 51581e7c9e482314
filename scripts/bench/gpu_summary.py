#!/usr/bin/env python3
"""Markdown summary of a scripts/bench/gpu_check.sh log, with issue 12's targets.

    gpu_summary.py GPU_CHECK_LOG [--mode gpu|cpu]

Reads the `bench ...` (secondpass), `torch ...` (PyTorch), `proxy ...`, `qdrant ...`
(the widened search straight to the real Qdrant), `reference ...`, `status ...` and
`gpu_memory ...` lines; prints tables and a verdict per target (for a
--mode cpu dry run the targets are shown but not judged).
"""

import argparse
import re
import sys


def fields(line):
    return dict(re.findall(r"(\w+)=(\"[^\"]*\"|[^\s|]+)", line))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("log")
    p.add_argument("--mode", default="gpu")
    a = p.parse_args()
    sp, sp_ab, torch, proxy, qdrant, status, other = {}, [], {}, [], {}, [], []
    for line in open(a.log, errors="replace"):
        line = line.strip()
        f = fields(line)
        if line.startswith("bench model="):
            key = (int(f["max_len"]), int(f["batch"]))
            rate = float(f["pairs_per_s"])
            # The device's defaults: IO binding and a tokenizer thread on a GPU, neither
            # on a CPU.
            default_io, default_tok = ("true", "1") if a.mode == "gpu" else ("false", "0")
            if f.get("io_binding") != default_io or f.get("tokenizer_threads") != default_tok:
                sp_ab.append((key, f, rate))
            else:
                sp[key] = (f, rate)
        elif line.startswith("torch impl=") and "pairs_per_s" in f:
            torch[(f["impl"], int(f["max_len"]), int(f["batch"]))] = float(f["pairs_per_s"])
        elif line.startswith("torch impl=") and "failed" in line:
            other.append(line)
        elif line.startswith("proxy max_len="):
            proxy.append(f)
        elif line.startswith("qdrant max_len="):
            qdrant[(f["max_len"], f["pool"], f["concurrency"])] = f
        elif line.startswith("status reranker="):
            status.append(line)
        elif line.startswith(("reference ", "gpu_memory ", "torch max_memory", "rss ", "# torch", "gpu_check:")):
            other.append(line)

    out = [f"# GPU check summary ({a.mode} run)", ""]
    out += ["## Execution providers (/admin/status)", ""] + [f"- `{s}`" for s in status] + [""]
    out += ["## secondpass vs PyTorch, pairs/s (same weights, text and device)", ""]
    out += ["| max_len | batch | secondpass | torch eager | x eager | torch.compile | x compile |", "|---|---|---|---|---|---|---|"]
    for (length, batch), (f, rate) in sorted(sp.items()):
        e = torch.get(("eager", length, batch))
        c = torch.get(("compile", length, batch))
        out.append(
            f"| {length} | {batch} | {rate:.0f} | {e or '-'} | {f'{rate / e:.2f}' if e else '-'} | {c or '-'} | "
            f"{f'{rate / c:.2f}' if c else '-'} |"
        )
    if sp_ab:
        out += ["", "Variants at one batch size (item 2: what IO binding and the tokenizer stage give):", ""]
        out += ["| max_len | batch | io_binding | tokenizer_threads | pairs/s | vs default |", "|---|---|---|---|---|---|"]
        for (length, batch), f, rate in sp_ab:
            base = sp.get((length, batch), (None, None))[1]
            out.append(
                f"| {length} | {batch} | {f.get('io_binding')} | {f.get('tokenizer_threads')} | {rate:.0f} | "
                f"{f'{rate / base:.2f}' if base else '-'} |"
            )
    def qdrant_p50(f):
        q = qdrant.get((f["max_len"], f["pool"], f["concurrency"]))
        return float(q["p50_ms"]) if q else None

    out += ["", "## Through the proxy (real Qdrant), pool of candidates per request", ""]
    out += ["Qdrant p50: the widened search alone, straight to Qdrant at the same concurrency.", ""]
    out += ["| max_len | pool | concurrency | p50 ms | p99 ms | pairs/s | Qdrant p50 ms |", "|---|---|---|---|---|---|---|"]
    for f in proxy:
        q = qdrant_p50(f)
        out.append(f"| {f['max_len']} | {f['pool']} | {f['concurrency']} | {f['p50_ms']} | {f['p99_ms']} | "
                   f"{f['pairs_per_s']} | {q if q is not None else '-'} |")
    out += ["", "## Other", ""] + [f"- `{o}`" for o in other] + [""]

    def verdict(ok, text):
        if a.mode != "gpu":
            return f"- (not judged on a CPU dry run) {text}"
        return f"- {'MET' if ok else 'MISSED'}: {text}"

    out += ["## Targets", ""]
    for length in (128, 256):
        rate = sp.get((length, 256), (None, None))[1]
        e = torch.get(("eager", length, 256))
        ratio = rate / e if rate and e else None
        out.append(verdict(ratio is not None and ratio >= 1.0,
                           f">= 1.0x PyTorch fp16 eager at batch 256, {length} tokens: "
                           f"{f'{ratio:.2f}x ({rate:.0f} vs {e:.0f} pairs/s)' if ratio else 'not measured'}"))
    c1 = [f for f in proxy if f["max_len"] == "256" and f["concurrency"] == "1" and f["pool"] == "100"]
    # The target leaves Qdrant's search out: the proxy's p50 less Qdrant's own.
    p50 = float(c1[0]["p50_ms"]) if c1 else None
    q50 = qdrant_p50(c1[0]) if c1 else None
    net = p50 - q50 if p50 is not None and q50 is not None else None
    out.append(verdict(net is not None and net <= 15,
                       f"100 x 256 tokens p50 <= 15 ms at concurrency 1, Qdrant's search excluded: "
                       f"{f'{net:.1f} ms ({p50} through the proxy less {q50} for Qdrant)' if net is not None else 'not measured'}"))
    c32 = [f for f in proxy if f["max_len"] == "128" and f["concurrency"] == "32"]
    rate = float(c32[0]["pairs_per_s"]) if c32 else None
    out.append(verdict(rate is not None and rate >= 20000, f">= 20,000 pairs/s sustained at concurrency 32, 128 tokens: {rate if rate is not None else 'not measured'}"))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
