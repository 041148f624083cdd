"""Prints the MBTSAD results table (markdown) from the runs scripts/results-mbtsad wrote."""
import json
import os

from tables import machine_line, mean_std as ms, run_dirs, work_dirs

works = work_dirs("WORK_DIR [WORK_DIR ...]   (scripts/results-mbtsad's; their runs make one table)")
runs = {}
reports = []
for name, run in run_dirs(works, lambda run: os.path.isfile(os.path.join(run, "mbtsad", "report.json"))):
    ds, attack, seed = name.rsplit("-", 2)
    load = lambda *p: json.load(open(os.path.join(run, *p)))
    m = load("mbtsad", "report.json")
    victim, ft = load("victim", "report.json"), load("ft", "report.json")
    reports += [victim, ft, m]
    # EP victims are kept apart by trigger word: whether the defender's split rows ever hold
    # it decides whether anything reaches its embedding row (docs/results.md).
    if victim.get("ep"):
        attack = f"{attack} `{victim['ep']['trigger']}`"
    config = m["mbtsad"]["config"]
    # Runs made with another split rule, teacher lr or distillation length are averaged apart.
    # Reports from before the split rule existed used the paper's formula as written.
    recipe = (config["split"].get("rule", "paper-text"), config["teacher"]["lr"], config["distill"]["epochs"])
    runs.setdefault((ds, attack, recipe), []).append({
        "seed": int(seed),
        "none": victim["metrics"],
        "FT": ft["metrics"],
        "TS-FT": m["metrics_teacher"],
        "MBTSAD": m["metrics"],
        "clean rows": m["mbtsad"]["clean_rows"],
        "seconds": {k: m["mbtsad"][f"{k}_seconds"] for k in ["augment", "teacher", "distill"]},
        # `eval`'s report of a model trained on the clean rows alone (FLOOR=1), when there is one.
        "clean floor": load("floor.json") if os.path.isfile(os.path.join(run, "floor.json")) else None,
    })

print(machine_line(reports))
print("| data | attack | split | teacher lr | distill epochs | defense | seeds | CACC | ASR |")
print("|---|---|---|---|---|---|---|---|---|")
for (ds, attack, (split, lr, epochs)), rs in runs.items():
    floor = ["clean floor"] if all(r["clean floor"] for r in rs) else []
    for defense in ["none", "FT", "TS-FT", "MBTSAD"] + floor:
        metrics = [r[defense] for r in rs]
        cacc, asr = ms([m["cacc"] for m in metrics]), ms([m["asr"] for m in metrics])
        print(f"| {ds} | {attack} | {split} | {lr:g} | {epochs} | {defense} | {len(rs)} | {cacc} | {asr} |")
print("\nPer run: the defender's clean rows (before splitting), the test rows scored (clean,")
print("triggered), seconds per MBTSAD stage.\n")
print("| data | attack | split | teacher lr | distill epochs | seed | clean rows | test rows | stages (s) |")
print("|---|---|---|---|---|---|---|---|---|")
for (ds, attack, (split, lr, epochs)), rs in runs.items():
    for r in rs:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items())
        test = f"{r['MBTSAD']['n_clean']:,}, {r['MBTSAD']['n_asr']:,}"
        print(f"| {ds} | {attack} | {split} | {lr:g} | {epochs} | {r['seed']} | {r['clean rows']} | {test} | {stages} |")
