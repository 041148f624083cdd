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
