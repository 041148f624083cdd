"""Prints the PURE results table (markdown) from the runs scripts/results-pure wrote."""
import json
import os
import sys

from tables import dirs_by_name, machine_line, mean_std as ms, work_dirs


def kept(trial):
    """The kept epoch's validation accuracy (reports before KEEP_EPOCH call it best_accuracy)."""
    return trial["kept_accuracy"] if "kept_accuracy" in trial else trial["best_accuracy"]


works = work_dirs("WORK_DIR [WORK_DIR ...]   (scripts/results-pure's; their seeds make one table)")
# A seed's runs may lie in several work directories (its DS runs made in another, say): they
# are merged if they share the victim; the same run in two of them is an error.
seeds = dirs_by_name(works, lambda path: os.path.basename(path).startswith("seed-"))
rows = {}
victims = []
reports = []
for seed_dir, paths in seeds.items():
    victim, files = None, {}
    for path in paths:
        report = os.path.join(path, "victim", "report.json")
        if os.path.isfile(report):
            r = json.load(open(report))
            if victim is None:
                victim = r
            elif any(r["metrics"][k] != victim["metrics"][k] for k in ("cacc", "asr")):
                sys.exit(f"{seed_dir} has different victims in {' and '.join(paths)}: not one experiment")
        for name in os.listdir(path):
            if name.endswith(".json"):
                if name in files:
                    sys.exit(f"{seed_dir}/{name} is in both {os.path.dirname(files[name])} and {path}: name one of them")
                files[name] = os.path.join(path, name)
    if victim is not None:
        reports.append(victim)
        victims.append(victim["metrics"])
    # Every method's step 1 is the same plain fine-tune (same seed and rows): the FT baseline,
    # taken once per seed and setting.
    # Runs with a fresh classifier head ("+fresh", FRESH_HEAD=1) fine-tune from another start:
    # their own FT row.
    ft = {}
    for name in sorted(files):
        setting, method = name[:-5].split("-", 1)
        r = json.load(open(files[name]))
        reports.append(r)
        ft.setdefault((setting, "FT+fresh" if "+fresh" in method else "FT"), (r["metrics_finetuned"], r["pure"]))
        rows.setdefault((setting, method), []).append((r["metrics"], r["pure"]))
    for (setting, method), baseline in ft.items():
        rows.setdefault((setting, method), []).append(baseline)

print(machine_line(reports))
if victims:
    print(f"Victims (no defense, {len(victims)} seeds): ACC {ms([v['cacc'] for v in victims])}, LFR {ms([v['asr'] for v in victims])}\n")
print("| setting | defense | seeds | ACC | LFR | heads pruned | μ (validation accuracy) |")
print("|---|---|---|---|---|---|---|")
for setting in ["fdk", "ds"]:
    # "+mu": μ chosen on validation accuracy from MU_SEARCH, "+last": the last epoch kept
    # (KEEP_EPOCH=last; FT has no such row) (scripts/results-pure).
    methods = ["FT", "pure", "pure+mu", "prune-only", "norm-only", "norm-only+mu"]
    known = [m + fresh + last for fresh in ("", "+fresh") for last in ("", "+last") for m in methods]
    # Other suffixes (LAYER_WEIGHTS, ATTENTION_ROWS) after these, by name.
    others = sorted(m for s, m in rows if s == setting and m not in known)
    for method in known + others:
        rs = rows.get((setting, method))
        if not rs:
            continue
        m = [x[0] for x in rs]
        if method.startswith("FT"):
            pruned = "-"
            mu = "- (" + " / ".join(f"{100 * p['pruning']['base_accuracy']:.2f}" for _, p in rs) + ")"
        else:
            pruned = " / ".join(str(sum(len(h) for h in p["pruning"]["pruned"])) for _, p in rs)
            # Reports from before the μ search have no mu_trials: their μ is the config's.
            mu = " / ".join(
                ", ".join(f"{t['mu']:g} ({100 * kept(t):.2f})" + ("*" if t["mu"] == p["mu"] else "") for t in p["mu_trials"])
                if "mu_trials" in p else f"{p['config']['mu']:g} ({100 * kept(p):.2f})"
                for _, p in rs
            )
        label = {"fdk": "SST-2 → SST-2", "ds": "IMDb → SST-2"}[setting]
        print(f"| {label} | {method} | {len(m)} | {ms([x['cacc'] for x in m])} | {ms([x['asr'] for x in m])} | {pruned} | {mu} |")
if any("+mu" in method for _, method in rows):
    print("\n(*: the μ kept, the largest whose validation accuracy is within the tolerance of plain fine-tuning's.)")
