"""Prints the clean-floor table (markdown) from the runs scripts/results-floor wrote."""
import json
import os
import sys

from tables import machine_line, mean_std as ms

work = sys.argv[1]
runs = {}
for name in sorted(os.listdir(work)):
    ds, seed = name.rsplit("-", 1)
    # One `<attack>.json` (the clean model's eval on that attack's test sets) per attack run.
    for file in sorted(os.listdir(os.path.join(work, name))):
        if file.endswith(".json"):
            runs.setdefault((ds, file[: -len(".json")]), []).append((int(seed), json.load(open(os.path.join(work, name, file)))))

print(machine_line())
print("| data | attack | seeds | clean CACC | clean-model ASR (floor) | per seed |")
print("|---|---|---|---|---|---|")
for (ds, attack), rs in sorted(runs.items()):
    per_seed = ", ".join(f"{s}: {100 * r['asr']:.2f}" for s, r in sorted(rs))
    print(f"| {ds} | {attack} | {len(rs)} | {ms([r['cacc'] for _, r in rs])} | {ms([r['asr'] for _, r in rs])} | {per_seed} |")
