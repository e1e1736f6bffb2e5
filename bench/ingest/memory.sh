#!/bin/bash
# Resident memory under ingest (docs/BENCHMARKS.md, "Memory under ingest"): `missive serve`
# with its ingest rate limit off and `engine.profile_cache` = $CACHE (200000 by default), the
# generator pinned to core 1 sending batches for SECONDS over USERS customers, and /metrics
# read every 10 s: seconds, profiles in cache, profiles stored, resident MiB, events accepted.
#   bench/ingest/memory.sh BINARY SECONDS USERS
set -euo pipefail
B=$1; SECS=$2; USERS=$3; PORT=${PORT:-18081}; D=$(mktemp -d)
printf 'listen = "127.0.0.1:%s"\n[limits]\ningest_per_second = 0\n[engine]\nprofile_cache = %s\n' \
  "$PORT" "${CACHE:-200000}" > "$D/missive.toml"
"$B" --config "$D/missive.toml" --data-dir "$D" serve > "$D/serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 0.2; done
KEY=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['write_key'])" "$D/credentials.json")
taskset -c 1 "$B" bench ingest --target "http://127.0.0.1:$PORT" --write-key "$KEY" \
  --seconds "$SECS" --users "$USERS" --mode batch > "$D/bench.out" 2>&1 &
GEN=$!
START=$(date +%s)
echo "seconds cache_profiles profiles rss_mib events_accepted"
while kill -0 $GEN 2>/dev/null; do
  M=$(curl -s "http://127.0.0.1:$PORT/metrics")
  echo "$(( $(date +%s) - START ))" \
    "$(echo "$M" | awk '/^missive_profile_cache_profiles /{print $2}')" \
    "$(echo "$M" | awk '/^missive_profiles /{print $2}')" \
    "$(echo "$M" | awk '/^process_resident_memory_bytes /{printf "%.0f", $2/1048576}')" \
    "$(echo "$M" | awk '/^missive_events_accepted_total/{s+=$2} END{print s}')"
  sleep 10
done
grep -E "^\| batch" "$D/bench.out"
