#!/usr/bin/env bash
# Build times of the `toolgate` binary, dev profile, dependencies already compiled:
#   cold        every host crate rebuilt (`cargo clean -p` of each, then `cargo build --bin toolgate`)
#   incremental the build after touching one HTTP handler file (its content unchanged)
# Prints one line per measurement: `<label> cold|incremental <seconds>`.
# Usage: host/server/benches/build_time.sh CHECKOUT HANDLER [LABEL]
#   host/server/benches/build_time.sh . host/server/src/http/health.rs after
#   host/server/benches/build_time.sh ../before host/src/http/health.rs before   (the commit before the split)
# To compare two checkouts, give both the same CARGO_TARGET_DIR (the dependencies are shared, each
# checkout's own crates are not) and call the script for each in turn, several rounds.
set -euo pipefail
CHECKOUT=$(cd "$1" && pwd)
HANDLER=$2
LABEL=${3:-$(basename "$CHECKOUT")}
cd "$CHECKOUT"
[ -f "$HANDLER" ] || { echo "no handler file \`$HANDLER\` in $CHECKOUT" >&2; exit 2; }
seconds() { local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N); echo "$end - $start" | bc; }
# The host's own packages: every workspace member under host/.
PACKAGES=$(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
doc = json.load(sys.stdin)
root = doc["workspace_root"] + "/host"
print(" ".join(p["name"] for p in doc["packages"] if p["manifest_path"].startswith(root + "/")))')
cargo build -q --bin toolgate   # warm: what the measurements start from
clean_args=()
for p in $PACKAGES; do clean_args+=(-p "$p"); done
cargo clean -q "${clean_args[@]}"
echo "$LABEL cold $(seconds cargo build -q --bin toolgate)"
touch "$HANDLER"
echo "$LABEL incremental $(seconds cargo build -q --bin toolgate)"
