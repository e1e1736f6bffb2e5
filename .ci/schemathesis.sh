#!/usr/bin/env bash
# Fuzzes the API against its own description with schemathesis (docs/api.md): starts
# `missive serve` on a fresh data directory and a free port, then runs schemathesis against
# /openapi.json twice: every operation with the admin key (Bearer), and the tracking API with
# the write key (HTTP Basic, as Segment's libraries send it). Fails on any 5xx, any response
# the description does not allow (status, content type, body schema).
#
#   .ci/schemathesis.sh                 # uses .ci/venv/bin/schemathesis (bash .ci/run makes it)
#   SCHEMATHESIS=~/venv/bin/schemathesis MISSIVE_BIN=target/debug/missive .ci/schemathesis.sh
#   ST_MAX_EXAMPLES=200 .ci/schemathesis.sh   # more cases per operation
#   MISSIVE_ST_CLUSTER=1 .ci/schemathesis.sh  # against a cluster node (below)
#
# With MISSIVE_ST_CLUSTER=1 the server is a node of a cluster of its own: its store in a new
# schema of the local PostgreSQL (through its Unix socket, which the network namespace does not
# cut off; MISSIVE_ST_PG_SOCKET, default /var/run/postgresql), its log on a nats-server with
# JetStream that this script starts on a free loopback port (nats-server must be on PATH).
#
# As root it runs inside a network namespace of its own with only loopback: the fuzzer invents
# webhook URLs, and the server may try them; there, nothing leaves the machine.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

if [[ -z ${MISSIVE_ST_NETNS:-} && $(id -u) -eq 0 ]] && command -v unshare >/dev/null \
    && unshare --net true 2>/dev/null; then
    export MISSIVE_ST_NETNS=1
    exec unshare --net bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
if [[ -z ${MISSIVE_ST_NETNS:-} ]]; then
    echo "warning: not isolated in a network namespace (needs root and unshare): webhook URLs the fuzzer invents may be tried" >&2
fi

SCHEMATHESIS=${SCHEMATHESIS:-$ROOT/.ci/venv/bin/schemathesis}
MISSIVE_BIN=${MISSIVE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/missive}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
SEED=${ST_SEED:-20260302}
[[ -x $MISSIVE_BIN ]] || { echo "no missive binary at $MISSIVE_BIN: cargo build -p missive-cli" >&2; exit 1; }
[[ -x $SCHEMATHESIS ]] || { echo "no schemathesis at $SCHEMATHESIS" >&2; exit 1; }
SCHEMATHESIS=$(realpath "$SCHEMATHESIS")

DATA=$(mktemp -d)
SERVER_PID=""
NATS_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $NATS_PID ]]; then kill "$NATS_PID" 2>/dev/null || true; wait "$NATS_PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

if [[ ${MISSIVE_ST_CLUSTER:-} == 1 ]]; then
    command -v nats-server >/dev/null || { echo "nats-server is not on PATH" >&2; exit 1; }
    SOCKET=${MISSIVE_ST_PG_SOCKET:-/var/run/postgresql}
    ID=$(python3 -c 'import uuid; print(uuid.uuid4().hex)')
    # Named like the tests' schemas, which .ci/run drops at its next start.
    SCHEMA="test_$ID"
    psql -h "$SOCKET" -U postgres -d test -q -c "CREATE SCHEMA $SCHEMA"
    NATS_PORT=$(free_port)
    nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$DATA/nats" >"$DATA/nats.log" 2>&1 &
    NATS_PID=$!
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $NATS_PORT), 1).close()" 2>/dev/null && break
        sleep 0.1
    done
    SOCKET_ENC=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$SOCKET")
    export MISSIVE_STORE="postgres://postgres@$SOCKET_ENC/test?options=-c%20search_path%3D$SCHEMA"
    export MISSIVE_CLUSTER__ENABLED=true
    export MISSIVE_CLUSTER__NATS="nats://127.0.0.1:$NATS_PORT"
    export MISSIVE_CLUSTER__STREAM="ST_$ID"
    export MISSIVE_CLUSTER__SUBJECT_PREFIX="st$ID.ev"
    export MISSIVE_CLUSTER__PARTITIONS=8
    export MISSIVE_CLUSTER__NODE=fuzzed
    echo "cluster mode: schema $SCHEMA, JetStream on 127.0.0.1:$NATS_PORT"
fi

# A free port: the server binds port 0 and says which it got.
MISSIVE_LOG__FORMAT=text MISSIVE_LOG__LEVEL=warn "$MISSIVE_BIN" serve --data-dir "$DATA" \
    --listen 127.0.0.1:0 >"$DATA/serve.out" 2>"$DATA/serve.log" &
SERVER_PID=$!
BASE=""
for _ in $(seq 300); do
    BASE=$(grep -o 'listening on http://[0-9.:]*' "$DATA/serve.out" 2>/dev/null | sed 's/listening on //' || true)
    [[ -n $BASE ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$DATA/serve.out" "$DATA/serve.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n $BASE ]] || { echo "missive serve did not start" >&2; cat "$DATA/serve.log" >&2; exit 1; }
if [[ ${MISSIVE_ST_CLUSTER:-} == 1 ]]; then
    # The only node takes the sending lease (broadcasts, journeys) within a lease round.
    for _ in $(seq 100); do
        "$MISSIVE_BIN" cluster status --data-dir "$DATA" 2>/dev/null | grep -q "sending: fuzzed" && break
        sleep 0.1
    done
fi
read -r WRITE_KEY ADMIN_KEY < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["write_key"], c["admin_key"])' "$DATA/credentials.json")
echo "missive at $BASE (data in $DATA)"

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
common=(
    --checks "$CHECKS"
    --phases examples,coverage,fuzzing
    --max-examples "$MAX_EXAMPLES"
    --seed "$SEED"
    # One worker: schemathesis's threads parse sources with `ast` at the same time, and
    # CPython 3.11 then fails at random with "AST constructor recursion depth mismatch"
    # (python/cpython#106905), a runtime error in the tool, not an answer of missive's.
    --workers 1
    --request-timeout 30
    --suppress-health-check all
    --warnings off
    --output-sanitize true
    ${ST_EXTRA:-}
)

# Schemathesis keeps a cache in its working directory: keep it out of the repository.
cd "$DATA"
status=0
echo "=== every operation, admin key as Bearer"
"$SCHEMATHESIS" run "$BASE/openapi.json" "${common[@]}" \
    -H "Authorization: Bearer $ADMIN_KEY" || status=$?
echo "=== the tracking API, write key as HTTP Basic"
"$SCHEMATHESIS" run "$BASE/openapi.json" "${common[@]}" \
    --include-tag tracking --auth "$WRITE_KEY:" || status=$?

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "missive serve died during the run" >&2
    status=1
fi
if grep -q "internal error" "$DATA/serve.log"; then
    echo "the server logged internal errors:" >&2
    grep "internal error" "$DATA/serve.log" | head -20 >&2
    status=1
fi
exit "$status"
