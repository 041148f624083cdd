"""Prints the BTU results table (markdown) from the runs scripts/results-btu wrote."""
import json
import os

from tables import label_names, machine_line, mean_std as ms, recall_cells, run_dirs, trigger_units, work_dirs

works = work_dirs("WORK_DIR [WORK_DIR ...]   (scripts/results-btu's; their runs make one table)")
runs = {}
paths = {}  # (data, attack, seed) -> the run's directory
for name, run in run_dirs(works, lambda run: os.path.isfile(os.path.join(run, "btu.json"))):
    ds, attack, seed = name.rsplit("-", 2)
    paths[ds, attack, int(seed)] = run
    r = json.load(open(os.path.join(run, "btu.json")))
    a = json.load(open(os.path.join(run, "data", "attack.json")))
    words = [w.lower() for unit in trigger_units(a) for w in unit]
    runs.setdefault((ds, attack), []).append((int(seed), r, words))

print(machine_line([r for rs in runs.values() for _, r, _ in rs]))
# Reports from before --btu-replace existed used [PAD], the paper's replacement.
settings = sorted({(r["btu"]["config"]["tune"]["epochs"], r["btu"]["config"].get("replacement", "pad")) for rs in runs.values() for _, r, _ in rs})
print("BTU settings: " + "; ".join(f"repair epochs {e}, eq. 7 replacement {rep}" for e, rep in settings) + "\n")
print("| data | attack | seeds | train rows | no defense CACC | no defense ASR | BTU CACC | BTU ASR |")
print("|---|---|---|---|---|---|---|---|")
for (ds, attack), rs in runs.items():
    und = [r["metrics_undefended"] for _, r, _ in rs]
    btu = [r["metrics"] for _, r, _ in rs]
    rows = rs[0][1]["train_rows"]
    print(f"| {ds} | {attack} | {len(rs)} | {rows} | {ms([m['cacc'] for m in und])} | {ms([m['asr'] for m in und])} "
          f"| {ms([m['cacc'] for m in btu])} | {ms([m['asr'] for m in btu])} |")

print("\nDetection: trigger tokens in T (found / trigger words), clean tokens caught (|T| minus found), per seed.\n")
print("| data | attack | seed | trigger found | clean tokens in T | round 1 (s) | rounds 2+3 (s) | fine-tune (s) | repair (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for (ds, attack), rs in runs.items():
    for seed, r, words in rs:
        b = r["btu"]
        tokens = [s["token"] for s in b["suspicious"]]
        found = [w for w in words if w in tokens]
        secs = {x["round"]: x["seconds"] for x in b["rounds"]}
        print(f"| {ds} | {attack} | {seed} | {len(found)}/{len(words)} ({' '.join(found) or '-'}) | {len(tokens) - len(found)} "
              f"| {secs.get(1, 0):.0f} | {secs.get(2, 0) + secs.get(3, 0):.0f} | {b['train_seconds']:.0f} | {b['tune_seconds']:.0f} |")

# --btu-spare-clean-movers: which of T's tokens the clean-split proxy spared (a trigger word among
# them would be left in place).
spared = [(k, seed, r, words) for k, rs in runs.items() for seed, r, words in rs if r["btu"].get("clean_round")]
if spared:
    print("\nSpared from eq. 7 (`--btu-spare-clean-movers`): tokens of T that the proxy trained on the clean split also flags.\n")
    print("| data | attack | seed | unlearned | spared | trigger words spared | spared tokens | clean proxy (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for (ds, attack), seed, r, words in spared:
        b = r["btu"]
        kept = [s["token"] for s in b["suspicious"] if s.get("spared")]
        hit = [w for w in words if w in kept]
        print(f"| {ds} | {attack} | {seed} | {len(b['suspicious']) - len(kept)} | {len(kept)} | {' '.join(hit) or '-'} "
              f"| {' '.join(f'`{t}`' for t in kept)} | {b['clean_round']['seconds']:.0f} |")

# Reports from before `eval` measured it have no asr_without_trigger: those runs are left out.
split = [(k, seed, r) for k, rs in runs.items() for seed, r, _ in rs if "asr_without_trigger" in r["metrics"]]
if split:
    print("\nASR split: the same non-target test rows without the trigger (clean mistakes) and what the trigger adds.\n")
    print("| data | attack | seed | no defense ASR | without trigger | trigger adds | BTU ASR | without trigger | trigger adds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (ds, attack), seed, r in split:
        cells = []
        for m in (r["metrics_undefended"], r["metrics"]):
            cells += [100 * m["asr"], 100 * m["asr_without_trigger"], 100 * (m["asr"] - m["asr_without_trigger"])]
        print(f"| {ds} | {attack} | {seed} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")

# Accuracy hides what BTU costs a minority class (OLID is 72% NOT): recall per class of the
# clean test set, from the confusion matrices `eval` writes.
recall = [(k, seed, r) for k, rs in runs.items() for seed, r, _ in rs if "confusion" in r["metrics"]]
if recall:
    print("\nClean-test recall per class (%), no defense → BTU.\n")
    print("| data | attack | seed | recall per class |")
    print("|---|---|---|---|")
    for (ds, attack), seed, r in recall:
        names = label_names(os.path.join(paths[ds, attack, seed], "data"))
        cells = recall_cells(names, r["metrics_undefended"]["confusion"]["counts"], r["metrics"]["confusion"]["counts"])
        print(f"| {ds} | {attack} | {seed} | {cells} |")
