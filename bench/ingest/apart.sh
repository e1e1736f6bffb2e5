#!/bin/bash
# The ingest bench's load generator apart from the server (docs/BENCHMARKS.md, "The load
# generator apart"): a fresh data dir, `missive serve` with its ingest rate limit off, the
# write key read from credentials.json, and the generator pinned to core 1.
#   bench/ingest/apart.sh BINARY                          # server on both cores
#   SERVER_PIN="taskset -c 0" bench/ingest/apart.sh BINARY # server pinned to core 0
set -euo pipefail
B=$1; PORT=${PORT:-18080}; D=$(mktemp -d)
printf 'listen = "127.0.0.1:%s"\n[limits]\ningest_per_second = 0\n' "$PORT" > "$D/missive.toml"
${SERVER_PIN:-} "$B" --config "$D/missive.toml" --data-dir "$D" serve > "$D/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
KEY=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['write_key'])" "$D/credentials.json")
taskset -c 1 "$B" bench ingest --target "http://127.0.0.1:$PORT" --write-key "$KEY" \
  --seconds "${SECONDS_PER_MODE:-8}" --mode both 2>&1 | grep -E "^\| (batch|single)"
