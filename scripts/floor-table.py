"""Prints the clean-floor table (markdown) from the runs scripts/results-floor wrote."""
import json
import os
import sys

from tables import machine_line, mean_std as ms

work = sys.argv[1]
runs = {}
for name in sorted(os.listdir(work)):
    ds, seed = name.rsplit("-", 1)
    for attack in ("badnets", "addsent"):
        path = os.path.join(work, name, f"{attack}.json")
        if os.path.isfile(path):
            runs.setdefault((ds, attack), []).append((int(seed), json.load(open(path))))

print(machine_line())
print("| data | attack | seeds | clean CACC | clean-model ASR (floor) | per seed |")
print("|---|---|---|---|---|---|")
for (ds, attack), rs in sorted(runs.items()):
    per_seed = ", ".join(f"{s}: {100 * r['asr']:.2f}" for s, r in sorted(rs))
    print(f"| {ds} | {attack} | {len(rs)} | {ms([r['cacc'] for _, r in rs])} | {ms([r['asr'] for _, r in rs])} | {per_seed} |")
