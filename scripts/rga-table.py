"""Prints the unlearning results table (markdown) from the runs scripts/results-rga wrote."""
import json
import os

from tables import machine_line, mean_std as ms, recalls, run_dirs, work_dirs

works = work_dirs("WORK_DIR [WORK_DIR ...]   (scripts/results-rga's; their runs make one table)")
METHODS = ["ga", "npo", "rga"]
runs = {}
targets = {}  # (data, attack, seed) -> the attack's target class
for name, run in run_dirs(works, lambda run: os.path.isfile(os.path.join(run, "retrain", "report.json"))):
    ds, attack, seed = name.rsplit("-", 2)
    victim = json.load(open(os.path.join(run, "victim", "report.json")))
    retrain = json.load(open(os.path.join(run, "retrain", "report.json")))
    methods = {}
    for m in METHODS:
        path = os.path.join(run, m, "report.json")
        if os.path.isfile(path):
            methods[m] = json.load(open(path))
    runs.setdefault((ds, attack), []).append((int(seed), victim, retrain, methods))
    targets[ds, attack, int(seed)] = json.load(open(os.path.join(run, "data", "attack.json")))["config"]["target"]

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

print("\nPer run. \"LFR w/o trigger\": the same non-target test rows, clean, called the target; "
      "\"target → elsewhere\": the triggered target-class rows of the PACC set predicted as another class, "
      "the direction a shifted trigger pushes. Then the unlearning: rows forgotten, epochs, last forget CE "
      "and λ, seconds.\n")
print("| data | attack | seed | model | CACC | LFR | LFR w/o trigger | PACC | ΔPACC | target → elsewhere "
      "| forget rows | epochs | last forget CE | last λ | seconds |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def pct(v):
    return "—" if v is None else f"{100 * v:.2f}"


def sent_elsewhere(m, target):
    """1 − the target class's recall on the triggered (PACC) test set; None without such rows."""
    c = m.get("confusion_pacc")
    if c is None or not sum(c["counts"][target]):
        return None
    return 1 - recalls(c["counts"])[target] / 100


for (ds, attack), rs in runs.items():
    for seed, victim, retrain, methods in rs:
        ref = retrain["metrics"]["pacc"]
        models = [("poisoned", victim["metrics"], None), ("ReTrain", retrain["metrics"], None)]
        models += [(m.upper(), r["metrics_after"], r) for m, r in methods.items()]
        for label, m, r in models:
            cells = [pct(m.get(k)) for k in ("cacc", "asr", "asr_without_trigger", "pacc")]
            cells += [pct(abs(m["pacc"] - ref)), pct(sent_elsewhere(m, targets[ds, attack, seed]))]
            if r is None:
                cells += [""] * 5
            else:
                last = r["epochs"][-1]
                cells += [str(r["forget_rows"]), str(len(r["epochs"])), f"{last['forget_loss']:.3f}",
                          f"{last['lambda']:.3f}", f"{r['seconds_unlearn']:.0f}"]
            print(f"| {ds} | {attack} | {seed} | {label} | " + " | ".join(cells) + " |")
