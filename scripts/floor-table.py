"""Prints the clean-floor table (markdown) from the runs scripts/results-floor wrote."""
import json
import os

from tables import label_names, machine_line, mean_std as ms, recall_cells, run_dirs, work_dirs

works = work_dirs("WORK_DIR [WORK_DIR ...]   (scripts/results-floor's; their runs make one table)")
runs = {}
paths = {}  # (data, seed) -> the run's directory
for name, run in run_dirs(works, lambda run: True):
    ds, seed = name.rsplit("-", 1)
    paths[ds, int(seed)] = run
    # One `<attack>.json` (the clean model's eval on that attack's test sets) per attack run.
    for file in sorted(os.listdir(run)):
        if file.endswith(".json"):
            runs.setdefault((ds, file[: -len(".json")]), []).append((int(seed), json.load(open(os.path.join(run, file)))))

print(machine_line([r for rs in runs.values() for _, r in rs]))
print("| data | attack | seeds | clean CACC | clean-model ASR (floor) | per seed |")
print("|---|---|---|---|---|---|")
for (ds, attack), rs in sorted(runs.items()):
    per_seed = ", ".join(f"{s}: {100 * r['asr']:.2f}" for s, r in sorted(rs))
    print(f"| {ds} | {attack} | {len(rs)} | {ms([r['cacc'] for _, r in rs])} | {ms([r['asr'] for _, r in rs])} | {per_seed} |")

# Evals from before `eval` measured it have no asr_without_trigger: those runs are left out.
split = [(k, seed, r) for k, rs in sorted(runs.items()) for seed, r in sorted(rs) if "asr_without_trigger" in r]
if split:
    print("\nFloor split: the same non-target test rows without the trigger (clean mistakes) and what the trigger adds.\n")
    print("| data | attack | seed | floor ASR | without trigger | trigger adds | clean recall per class |")
    print("|---|---|---|---|---|---|---|")
    for (ds, attack), seed, r in split:
        cells = [100 * r["asr"], 100 * r["asr_without_trigger"], 100 * (r["asr"] - r["asr_without_trigger"])]
        recall = recall_cells(label_names(os.path.join(paths[ds, seed], f"{attack}-data")), r["confusion"]["counts"])
        print(f"| {ds} | {attack} | {seed} | " + " | ".join(f"{c:.2f}" for c in cells) + f" | {recall} |")
