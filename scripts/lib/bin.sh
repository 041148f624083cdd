# Sourced by the results scripts after ROOT and CARGO_TARGET_DIR are set: defines `bd`, which
# runs bdaudit on $DEVICE (default cpu). BDAUDIT_BIN names a prebuilt binary instead of the
# default release build, e.g. a `--features cuda` build copied to a GPU box without cargo.
DEVICE="${DEVICE:-cpu}"
if [[ -n "${BDAUDIT_BIN:-}" ]]; then
  BIN="$BDAUDIT_BIN"
else
  cargo build --release -q -p bdaudit --manifest-path "$ROOT/Cargo.toml"
  BIN="$CARGO_TARGET_DIR/release/bdaudit"
fi
# Exported for the table scripts, which ask it which OpenBLAS kernels ran (scripts/tables.py).
export BDAUDIT_BIN="$BIN"
bd() { "$BIN" "$@" --device "$DEVICE"; }

# GROUP_BY_LENGTH=1: the scripts pass "${grouped[@]}" to the defender's fine-tunes, which then
# batch rows of similar length together (`--group-by-length`, 1.6x faster on a CPU).
grouped=()
if [[ -n "${GROUP_BY_LENGTH:-}" ]]; then grouped=(--group-by-length); fi

# Poisons data directory $2 with attack $1 as the BTU table does (10%, target 1, seed $3) into
# $4; scripts/results-floor scores clean models on the same triggered test sets.
btu_attack() {
  bd attack "$1" --data "$2" --rate 0.1 --target 1 --seed "$3" --out "$4" --force
}

# Writes $1/clean-data: the training rows `bdaudit attack` left clean ($1/data/train-clean.tsv)
# as a data directory of their own, with the attack's dev, label and test files, so a model
# trained on them is scored on the same test sets (RGA's ReTrain, MBTSAD's defender and EP).
clean_data_dir() {
  local run="$1"
  mkdir -p "$run/clean-data"
  cp "$run/data/train-clean.tsv" "$run/clean-data/train.tsv"
  for f in dev.tsv labels.tsv test.tsv test-asr.tsv test-pacc.tsv; do
    if [[ -f "$run/data/$f" ]]; then cp "$run/data/$f" "$run/clean-data/$f"; fi
  done
}

# Prints how many rows of the data file $1 (with a header) the clean fraction $2 keeps, counted
# as `purify mbtsad` counts them (round half away from zero, at least one), so an FT baseline
# given `--limit` of it trains on the rows MBTSAD draws.
fraction_rows() {
  python3 -c 'import sys; n = sum(1 for _ in open(sys.argv[1])) - 1; print(max(1, int(n * float(sys.argv[2]) + 0.5)))' "$1" "$2"
}

# Prints a seeded, stratified subset of $2 rows of the data file $1 (header kept, rows in file
# order): each label keeps its share of the file. The seed is $3.
stratified_subset() {
  python3 - "$1" "$2" "$3" <<'PY'
import random, sys
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lines = open(path, encoding="utf-8").read().splitlines()
header, rows = lines[0], lines[1:]
by_label = {}
for i, row in enumerate(rows):
    by_label.setdefault(row.rsplit("\t", 1)[1], []).append(i)
# Largest-remainder shares, so the labels' counts add up to exactly n.
n = min(n, len(rows))
labels = sorted(by_label)
exact = {l: n * len(by_label[l]) / len(rows) for l in labels}
count = {l: int(exact[l]) for l in labels}
for l in sorted(labels, key=lambda l: count[l] - exact[l])[: n - sum(count.values())]:
    count[l] += 1
rng = random.Random(seed)
keep = []
for label in labels:
    keep += rng.sample(by_label[label], count[label])
print(header)
for i in sorted(keep):
    print(rows[i])
PY
}

# Exits with a message when the recipe file $1 records another recipe than $2 (a missing file
# counts as another): outputs made under two recipes are not mixed. $3 says what to do instead.
require_recipe() {
  local have
  have="$(cat "$1" 2>/dev/null || echo unrecorded)"
  if [[ "$have" != "$2" ]]; then
    echo "$(basename "$0"): $(dirname "$1") was made with $have, not $2; $3" >&2
    exit 1
  fi
}

# Records recipe $2 in $1 on first use, then holds the directory to it (require_recipe). A
# directory that already has outputs but no recipe file (the path $4, when given, exists) is
# refused rather than claimed: what made those outputs is unknown.
claim_recipe() {
  if [[ ! -f "$1" && ! ( -n "${4:-}" && -e "$4" ) ]]; then
    mkdir -p "$(dirname "$1")"
    echo "$2" >"$1"
  fi
  require_recipe "$1" "$2" "$3"
}
