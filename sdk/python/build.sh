#!/usr/bin/env bash
# Build the Python example plugin into <target>/fixtures/python_example.wasm (about 18 MB).
# Installs componentize-py 0.25 (PyPI) into a venv under the target directory on first use.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/python/venv

if [ ! -x "$venv/bin/componentize-py" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet 'componentize-py==0.25.*'
fi
mkdir -p "$target/fixtures"
# No bytecode beside the sources.
export PYTHONDONTWRITEBYTECODE=1
cd "$root/sdk/python/example"
"$venv/bin/componentize-py" --quiet -d "$root/wit" -w plugin componentize app -o "$target/fixtures/python_example.wasm"
echo "$target/fixtures/python_example.wasm"
