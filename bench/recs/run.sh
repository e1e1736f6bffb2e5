#!/usr/bin/env bash
# `missive bench recs` side by side with the `implicit` package, in one run on this machine:
# installs it into bench/recs/.venv, builds missive in release mode, and prints the table
# docs/BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=bench/recs/.venv
if ! [[ -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import implicit' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
        implicit==0.7.3 numpy==2.4.6 scipy==1.17.1 tqdm==4.70.1 threadpoolctl==3.8.0
fi
cargo build --release --bin missive
./target/release/missive bench recs --python "$VENV/bin/python" "$@"
