"""Variants of a BTU run's triggered test set, and the table of how models score them.

  btu-residual.py make DATA_DIR OUT_DIR   writes OUT_DIR/<variant>.tsv from DATA_DIR/test-asr.tsv
  btu-residual.py table DATA_DIR OUT_DIR  prints, per variant and model, the share predicted as
                                          the target of DATA_DIR/attack.json

BTU replaces the moved dimensions of each trigger token's embedding with the [PAD] row's
(eq. 7), so a purified model reads a trigger as a [PAD] token inside the text. The variants
separate what is left of an ASR: the trigger as inserted, the trigger deleted (the model's
error on clean non-target rows), each trigger word replaced by [PAD] or [UNK] (what a token
the model never saw in text does), and each BadNets word alone.
"""
import json
import os
import re
import sys

from tables import trigger_units


def rows(path):
    with open(path) as f:
        header = f.readline()
        return header, [line.rstrip("\n").split("\t") for line in f if line.strip()]


def attack_of(data_dir):
    return json.load(open(os.path.join(data_dir, "attack.json")))


def make(data_dir, out_dir):
    units = trigger_units(attack_of(data_dir))
    header, test = rows(os.path.join(data_dir, "test-asr.tsv"))
    # Case-insensitive: AddSent inserts its sentence as written, the tokenizer lowercases.
    patterns = [(u, re.compile(r"(?<!\S)" + r"\s+".join(map(re.escape, u)) + r"(?!\S)", re.IGNORECASE)) for u in units]
    variants = {"triggered": [], "deleted": [], "pad": [], "unk": []}
    if len(units) > 1:
        variants.update({f"only-{u[0]}": [] for u in units})
    unmatched = 0
    for text, label in test:
        found = [(u, p) for u, p in patterns if p.search(text)]
        if not found:
            unmatched += 1
            continue
        variants["triggered"].append(text)
        for name, repl in [("deleted", None), ("pad", "[PAD]"), ("unk", "[UNK]")]:
            t = text
            for u, p in found:
                t = p.sub(" ".join([repl] * len(u)) if repl else "", t)
            variants[name].append(" ".join(t.split()))
        if len(units) > 1 and len(found) == 1:
            variants[f"only-{found[0][0][0]}"].append(text)
    if not variants["triggered"]:
        sys.exit(f"btu-residual: no row of {data_dir}/test-asr.tsv holds the trigger of attack.json")
    os.makedirs(out_dir, exist_ok=True)
    for name, texts in variants.items():
        with open(os.path.join(out_dir, f"{name}.tsv"), "w") as f:
            f.write(header)
            f.writelines(f"{t}\t{test[0][1]}\n" for t in texts)
    if unmatched:
        print(f"btu-residual: {unmatched} of {len(test)} rows hold no trigger and were left out", file=sys.stderr)


def table(data_dir, out_dir):
    target = attack_of(data_dir)["config"]["target"]
    models = sorted(d for d in os.listdir(out_dir) if os.path.isdir(os.path.join(out_dir, d)))
    variants = sorted(f[:-4] for f in os.listdir(out_dir) if f.endswith(".tsv"))
    order = ["triggered", "deleted", "pad", "unk"]
    variants = [v for v in order if v in variants] + [v for v in variants if v not in order]
    print("| variant | rows | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    for v in variants:
        cells = []
        n = 0
        for m in models:
            logits = json.load(open(os.path.join(out_dir, m, f"{v}.json")))["logits"]
            n = len(logits)
            hits = sum(1 for l in logits if max(range(len(l)), key=l.__getitem__) == target)
            cells.append(f"{100 * hits / max(n, 1):.2f}")
        print(f"| {v} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        table(sys.argv[2], sys.argv[3])
