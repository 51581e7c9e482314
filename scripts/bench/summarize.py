#!/usr/bin/env python3
"""Summarizes a scripts/bench/run.sh log as Markdown tables: pairs/s of secondpass vs
Python (ratios), achieved GFLOP/s against the sgemm ceiling, batching and threads."""

import re
import sys


def fields(line):
    return dict(re.findall(r"(\w+)=([^\s|]+)", line))


def main(path):
    ceiling, flops, rust, py, conc = None, {}, {}, {}, []
    for line in open(path):
        f = fields(line)
        if line.startswith("ceiling"):
            ceiling = float(f["sgemm_gflops"])
        elif line.startswith("flops"):
            flops[int(f["max_len"])] = float(f["gflop_per_pair"])
        elif line.startswith("bench impl="):
            py[(f["impl"], f["model"], int(f["max_len"]), int(f["batch"]))] = float(f["pairs_per_s"])
        elif line.startswith("bench model=") and f.get("callers") == "1":
            rust[(f["model"], int(f["max_len"]), int(f["batch"]))] = float(f["pairs_per_s"])
        elif line.startswith("bench model="):
            conc.append(f)
    print(f"sgemm ceiling: {ceiling} GFLOP/s\n")
    print("| model | max_len | batch | secondpass pairs/s | GFLOP/s | % of sgemm | ort-py pairs/s | x ort-py | CrossEncoder pairs/s | x CrossEncoder |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (model, length, batch), rate in sorted(rust.items()):
        gf = rate * flops.get(length, float("nan"))
        share = 100 * gf / ceiling if ceiling else float("nan")
        o = py.get(("ort-py", model, length, batch))
        s = py.get(("st", "fp32", length, batch)) if model == "fp32" else None
        cell = lambda v: f"{v:.1f}" if v else "-"
        ratio = lambda v: f"{rate / v:.2f}" if v else "-"
        print(f"| {model} | {length} | {batch} | {rate:.1f} | {gf:.0f} | {share:.0f}% | {cell(o)} | {ratio(o)} | {cell(s)} | {ratio(s)} |")
    if conc:
        print("\n| model | callers x pairs | workers x threads | batch | batching | pairs/s | p50 ms | p99 ms | mean rows/batch |")
        print("|---|---|---|---|---|---|---|---|---|")
        for f in conc:
            print(
                f"| {f['model']} | {f['callers']} x {f['pairs']} | {f['workers']} x {f['threads']} | {f['batch']} | {f['batching']} "
                f"| {f['pairs_per_s']} | {f['p50_ms']} | {f['p99_ms']} | {f['mean_batch_rows']} |"
            )


if __name__ == "__main__":
    main(sys.argv[1])
