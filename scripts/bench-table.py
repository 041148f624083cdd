"""Prints a markdown table of `bdaudit bench --json` / bench-torch.py lines, each row's times
as a ratio to the first PyTorch row of the same batch and sequence length.

    bench-table.py ROWS.jsonl
"""
import json
import sys

from tables import machine

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
torch = {}
for r in rows:
    if r["backend"].startswith("pytorch"):
        torch.setdefault((r["batch"], r["seq"]), r)
# The machine the rows were timed on: bdaudit's own record in its rows (scripts/bench times
# PyTorch in the same run), so a table printed elsewhere later still names it.
recorded = [r["machine"] for r in rows if "machine" in r]
if recorded:
    where = f"{recorded[0]['cpu']}, {recorded[0]['cpus']} CPUs, {recorded[0]['arch']}"
    core = next((m["openblas"] for m in recorded if m.get("openblas")), None)
    gpu = next((m["gpu"] for m in recorded if m.get("gpu")), None)
else:
    where, core, gpu = f"{machine()} (where this table was printed: no row records its own)", None, None
kernels = f"; OpenBLAS {core} kernels" if core else ""
gpu = f"; GPU {gpu}" if gpu else ""
print(f"Machine: {where}{kernels}{gpu}; best of the timed runs.\n")
print("| backend | batch × seq | forward ms | train step ms | forward vs PyTorch | step vs PyTorch |")
print("|---|---|---|---|---|---|")
for r in rows:
    ref = torch.get((r["batch"], r["seq"]))
    f, s = r["forward"]["best_ms"], r["train_step"]["best_ms"]
    rf = f"{f / ref['forward']['best_ms']:.2f}x" if ref else "—"
    rs = f"{s / ref['train_step']['best_ms']:.2f}x" if ref else "—"
    print(f"| {r['backend']} | {r['batch']} × {r['seq']} | {f:.1f} | {s:.1f} | {rf} | {rs} |")
