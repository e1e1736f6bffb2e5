#!/usr/bin/env bash
# Side-by-side render benchmark: missive, liquidjs and python-liquid render the same
# cart-abandonment e-mail (examples/cart-abandonment, compiled by missive) for the same 1,000
# recipients, each on one thread. Installs pinned liquidjs (npm) and python-liquid (PyPI) under
# bench/render/. Usage: bench/render/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
HERE=$(pwd)
ROOT=$(cd ../.. && pwd)
SECONDS_PER_RUN=${1:-5}
LIQUIDJS=10.30.1
PYTHON_LIQUID=2.3.6
MARKUPSAFE=3.0.4

if [[ ! -d node_modules/liquidjs ]] || [[ $(node -p "require('./node_modules/liquidjs/package.json').version") != "$LIQUIDJS" ]]; then
    echo "installing liquidjs $LIQUIDJS" >&2
    [[ -f package.json ]] || echo '{"private": true, "type": "module"}' > package.json
    npm install --silent --no-audit --no-fund "liquidjs@$LIQUIDJS" >&2
fi
if [[ ! -x venv/bin/python ]] || ! venv/bin/python -c "import liquid, sys; sys.exit(liquid.__version__ != '$PYTHON_LIQUID')" 2>/dev/null; then
    echo "installing python-liquid $PYTHON_LIQUID" >&2
    python3 -m venv venv
    venv/bin/pip install --quiet "python-liquid==$PYTHON_LIQUID" "markupsafe==$MARKUPSAFE" >&2
fi

(cd "$ROOT" && cargo build --release --quiet --bin missive)
EXPORT=$(mktemp -d)
trap 'rm -rf "$EXPORT"' EXIT
"$ROOT/target/release/missive" bench render --seconds "$SECONDS_PER_RUN" --export "$EXPORT"
node "$HERE/liquidjs.mjs" "$EXPORT" "$SECONDS_PER_RUN"
venv/bin/python "$HERE/python_liquid.py" "$EXPORT" "$SECONDS_PER_RUN"
