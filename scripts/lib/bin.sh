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
bd() { "$BIN" "$@" --device "$DEVICE"; }

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
