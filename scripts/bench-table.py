"""Prints a markdown table of `bdaudit bench --json` / bench-torch.py lines, each row's times
as a ratio to the first PyTorch row of the same batch and sequence length.

    bench-table.py ROWS.jsonl
"""
import json
import sys

from tables import machine, openblas_core

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = {}
for r in rows:
    if r["backend"].startswith("pytorch"):
        torch.setdefault((r["batch"], r["seq"]), r)
core = openblas_core()
kernels = f"; OpenBLAS {core} kernels" if core else ""
print(f"Machine: {machine()}{kernels}; best of the timed runs.\n")
print("| backend | batch × seq | forward ms | train step ms | forward vs PyTorch | step vs PyTorch |")
print("|---|---|---|---|---|---|")
for r in rows:
    ref = torch.get((r["batch"], r["seq"]))
    f, s = r["forward"]["best_ms"], r["train_step"]["best_ms"]
    rf = f"{f / ref['forward']['best_ms']:.2f}x" if ref else "—"
    rs = f"{s / ref['train_step']['best_ms']:.2f}x" if ref else "—"
    print(f"| {r['backend']} | {r['batch']} × {r['seq']} | {f:.1f} | {s:.1f} | {rf} | {rs} |")
