#!/usr/bin/env bash
# `missive bench models` side by side with scikit-learn and lifetimes, in one run on this
# machine: installs the references into bench/models/.venv, builds missive in release mode, and
# prints the table docs/BENCHMARKS.md records.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=bench/models/.venv
if ! [[ -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sklearn, lifetimes' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
        scikit-learn==1.9.1 numpy==2.4.6 scipy==1.17.1 pandas==3.1.1 lifetimes==0.11.3
fi
cargo build --release --bin missive
./target/release/missive bench models --python "$VENV/bin/python" "$@"
