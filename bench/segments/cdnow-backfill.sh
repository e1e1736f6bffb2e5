#!/bin/bash
# Segment saves over CDNOW (docs/BENCHMARKS.md, the engine's backfill): a fresh import of the
# full log, then four saves, each timed: a segment over traits and one counting events over
# the log, each saved new and then again.
#   bench/segments/cdnow-backfill.sh BINARY [CDNOW_master.txt]
set -euo pipefail
B=$1; LOG=${2:-../shared/data/cdnow/CDNOW_master.txt}; T=$(mktemp -d); D=$T/cdnow
trap 'rm -rf "$T"' EXIT
"$B" --data-dir "$D" import "$LOG" --delimiter whitespace --user-col customer_id --time-col date \
  --time-format %Y%m%d --amount-col dollar_value --quantity-col number_of_cds > /dev/null 2>&1
save() {
  local s; s=$(date +%s.%N)
  "$B" --data-dir "$D" segment save "$1" "$2" > /dev/null 2>&1 || echo "FAILED $1"
  echo "$1 $(python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$s") s"
}
save big-spenders1 'orders.count >= 10 and orders.revenue > 1000'
save big-orders1 'count(event "Order Completed" where properties.revenue > 100) >= 2'
save big-spenders2 'orders.count >= 10 and orders.revenue > 1000'
save big-orders2 'count(event "Order Completed" where properties.revenue > 100) >= 2'
