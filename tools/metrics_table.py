#!/usr/bin/env python3
"""Prints the INT4/INT8 probe records of a ./train run's metrics.jsonl as a
markdown table (step, FP32 validation PPL, INT4 and INT8 gaps in %, mean
excess kurtosis of the quantized weights), for docs that must show numbers
computed from committed metrics files rather than typed in.

  tools/metrics_table.py RUN_DIR/metrics.jsonl [--formats int4_probe,int8_probe]
  tools/metrics_table.py RUN_DIR/metrics.jsonl --check docs/reproduction.md

--check prints nothing and fails unless the table appears verbatim in the
given document (the test suite runs it, so a doc table cannot drift from
its metrics file).
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("metrics")
    ap.add_argument("--formats", default="int4_probe,int8_probe")
    ap.add_argument("--check", metavar="DOC")
    a = ap.parse_args()
    fmts = a.formats.split(",")
    rows = [json.loads(l) for l in open(a.metrics) if l.strip()]
    quant = [r for r in rows if r.get("kind") == "quant"]
    if not quant:
        raise SystemExit(f"{a.metrics}: no quant records (was quant.probe_every set?)")
    lines = ["| step | FP32 PPL | " + " | ".join(f"{f} gap %" for f in fmts) + " | mean kurtosis |",
             "| --- | --- | " + " | ".join("---" for _ in fmts) + " | --- |"]
    for r in quant:
        gaps = " | ".join(f"{r['gap_pct_' + f]:+.3f}" for f in fmts)
        lines.append(f"| {r['step']} | {r['fp_ppl']:.2f} | {gaps} | "
                     f"{r.get('mean_kurtosis', float('nan')):.3f} |")
    table = "\n".join(lines) + "\n"
    if a.check:
        if table not in open(a.check).read():
            raise SystemExit(f"{a.check}: does not contain the table computed from {a.metrics} "
                             f"(regenerate it with tools/metrics_table.py {a.metrics})")
        return
    print(table, end="")

if __name__ == "__main__":
    main()
