#!/bin/bash
# Segment saves over 1,000,000 stored profiles (docs/BENCHMARKS.md, issue 20 item 2): a
# generated CDNOW-shaped log (two orders per customer, over 18 months), imported, then a
# segment over order totals and one counting events over the log, each saved and timed.
#   bench/segments/million-backfill.sh BINARY [CUSTOMERS]
# KEEP=DIR keeps the imported data directory there (to profile saves on it afterwards).
set -euo pipefail
B=$1; N=${2:-1000000}; T=$(mktemp -d); D=${KEEP:-$T/million}
trap 'rm -rf "$T"' EXIT
python3 - "$N" > "$T/log.txt" <<'PY'
import random, sys
n = int(sys.argv[1]); rng = random.Random(20)
print("customer_id date number_of_cds dollar_value")
for c in range(1, n + 1):
    for _ in range(2):
        day = rng.randrange(0, 540)
        y, m, d = 1997 + day // 360, day % 360 // 30 + 1, day % 30 + 1
        print(f"{c:07d} {y}{m:02d}{min(d, 28):02d} {rng.randrange(1, 5)} {rng.uniform(5, 150):.2f}")
PY
s=$(date +%s.%N)
"$B" --data-dir "$D" import "$T/log.txt" --delimiter whitespace --user-col customer_id --time-col date \
  --time-format %Y%m%d --amount-col dollar_value --quantity-col number_of_cds > "$T/import.log" 2>&1 \
  || { tail -5 "$T/import.log"; exit 1; }
echo "import $(python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 1))" "$s") s ($(wc -l < "$T/log.txt") lines), data $(du -sh "$D" | cut -f1)"
save() {
  local s; s=$(date +%s.%N)
  "$B" --data-dir "$D" segment save "$1" "$2" > "$T/save.log" 2>&1 || { echo "FAILED $1"; tail -3 "$T/save.log"; }
  echo "$1 $(python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$s") s"
}
save big-spenders 'orders.count >= 2 and orders.revenue > 200'
save big-orders 'count(event "Order Completed" where properties.revenue > 100) >= 2'
