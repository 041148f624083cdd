"""Prints the MBTSAD tuning table (markdown) from the runs scripts/tune-mbtsad wrote: dev CACC
and dev ASR of each distillation setting, beside the victim, plain fine-tuning on the same
clean rows (FT) and the teacher (TS-FT). "w/o trigger" is the share of the same negative dev
rows called positive with no trigger inserted: the part of ASR the trigger is not needed for."""
import json
import os
import sys

from tables import machine_line, mean_std as ms


def lr(value):
    """5e-4, not 0.0005: the form the CLI's flags and the docs use."""
    return f"{value:.0e}".replace("e-0", "e-")


def scores(m):
    """dev CACC, ASR and ASR without the trigger (blank in reports made before eval had it)."""
    without = m.get("asr_without_trigger")
    return f"{ms([m['cacc']])} | {ms([m['asr']])} | {'' if without is None else ms([without])}"


work = sys.argv[1]
reports = [json.load(open(os.path.join(work, n))) for n in sorted(os.listdir(work)) if n.endswith(".json") and n != "ft.json"]
if not reports:
    sys.exit(f"no reports in {work}")
print(machine_line(reports))
first = reports[0]
# One report retrained the teacher; the others were given it (`--teacher`) and carry no recipe.
trained = [r for r in reports if r["mbtsad"]["teacher_log"] is not None]
recipe = ""
if trained:
    t = trained[0]["mbtsad"]
    recipe = f"teacher {t['config']['teacher']['epochs']} epochs at lr {lr(t['config']['teacher']['lr'])} ({t['teacher_seconds']:.0f} s); "
print(f"{first['mbtsad']['clean_rows']} clean rows ({first['mbtsad']['augmented_rows']} split texts); {recipe}"
      f"scored on dev: {first['metrics']['n_clean']} rows clean, {first['metrics']['n_asr']} triggered.\n")


print("| model | α | β | distillation lr | epochs | distillation seed | dev CACC | dev ASR | w/o trigger | distillation (s) |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| victim | | | | | | {scores(first['metrics_suspect'])} | |")
if os.path.isfile(os.path.join(work, "ft.json")):
    ft = json.load(open(os.path.join(work, "ft.json")))["metrics"]
    print(f"| FT (the same rows, unsplit) | | | | | | {scores(ft)} | |")
print(f"| teacher (TS-FT) | | | | | | {scores(first['metrics_teacher'])} | |")
for r in sorted(reports, key=lambda r: (r["mbtsad"]["config"]["distill"]["lr"], r["mbtsad"]["config"]["distill"]["epochs"],
                                        r["mbtsad"]["config"]["alpha"], r["mbtsad"]["config"]["beta"],
                                        r["mbtsad"]["config"]["distill"]["seed"])):
    c = r["mbtsad"]["config"]
    m = r["metrics"]
    # `purify mbtsad` warns when the student gives all of its first training rows one class.
    name = "MBTSAD (collapsed)" if r.get("warnings") else "MBTSAD"
    print(f"| {name} | {c['alpha']:g} | {c['beta']:g} | {lr(c['distill']['lr'])} | {c['distill']['epochs']} | {c['distill']['seed']} | "
          f"{scores(m)} | {r['mbtsad']['distill_seconds']:.0f} |")
