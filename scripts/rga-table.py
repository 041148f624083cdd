"""Prints the unlearning results table (markdown) from the runs scripts/results-rga wrote."""
import json
import os
import sys

from tables import machine_line, mean_std as ms

work = sys.argv[1]
METHODS = ["ga", "npo", "rga"]
runs = {}
for name in sorted(os.listdir(work)):
    run = os.path.join(work, name)
    if not os.path.isfile(os.path.join(run, "retrain", "report.json")):
        continue
    ds, attack, seed = name.rsplit("-", 2)
    victim = json.load(open(os.path.join(run, "victim", "report.json")))
    retrain = json.load(open(os.path.join(run, "retrain", "report.json")))
    methods = {}
    for m in METHODS:
        path = os.path.join(run, m, "report.json")
        if os.path.isfile(path):
            methods[m] = json.load(open(path))
    runs.setdefault((ds, attack), []).append((int(seed), victim, retrain, methods))

print(machine_line([x for rs in runs.values() for _, v, r, methods in rs for x in [v, r, *methods.values()]]))
print("| data | attack | model | seeds | CACC | LFR | PACC | ΔPACC |")
print("|---|---|---|---|---|---|---|---|")
for (ds, attack), rs in runs.items():
    ref = [r["metrics"]["pacc"] for _, _, r, _ in rs]

    def row(label, metrics):
        n = len(metrics)
        deltas = [abs(m["pacc"] - p) for m, p in zip(metrics, ref)]
        print(f"| {ds} | {attack} | {label} | {n} | {ms([m['cacc'] for m in metrics])} | {ms([m['asr'] for m in metrics])} "
              f"| {ms([m['pacc'] for m in metrics])} | {ms(deltas)} |")

    row("poisoned (no defense)", [v["metrics"] for _, v, _, _ in rs])
    row("ReTrain (clean rows)", [r["metrics"] for _, _, r, _ in rs])
    for m in METHODS:
        done = [ms_[m]["metrics_after"] for _, _, _, ms_ in rs if m in ms_]
        if len(done) == len(rs):
            row(m.upper(), done)

print("\nPer run: rows forgotten, unlearning epochs, final forget loss and λ, seconds.\n")
print("| data | attack | seed | forget rows | method | epochs | last forget CE | last λ | seconds |")
print("|---|---|---|---|---|---|---|---|---|")
for (ds, attack), rs in runs.items():
    for seed, _, _, methods in rs:
        for m, r in methods.items():
            last = r["epochs"][-1]
            print(f"| {ds} | {attack} | {seed} | {r['forget_rows']} | {m.upper()} | {len(r['epochs'])} "
                  f"| {last['forget_loss']:.3f} | {last['lambda']:.3f} | {r['seconds_unlearn']:.0f} |")
