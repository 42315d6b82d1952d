#!/usr/bin/env bash
# Measures the Node reference cluster alone (2 workers) at 200 and 1000
# clients: max-throughput (3 repetitions each, fresh cluster per run), a
# fixed-rate point each (20k deliveries/s), and the raw client. Writes
# bench/results/node-ref-*.json; ~3 minutes.
#   usage: bench/ref-figures.sh        env: PORT (default 3000), REPS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n 2,6p "$0"; exit 0; fi
PORT=${PORT:-3000}
REPS=${REPS:-3}
run_one() {
  local name=$1; shift
  local log; log=$(mktemp)
  node bench/node-ref/primary.js --workers 2 --port "$PORT" >"$log" 2>&1 &
  local P=$!
  for _ in $(seq 100); do grep -q "node-ref ready" "$log" && break; sleep 0.1; done
  grep -q "node-ref ready" "$log" || { echo "node-ref did not start:"; cat "$log"; kill $P; exit 1; }
  echo "+ node bench/load.mjs --url http://127.0.0.1:$PORT $*"
  node bench/load.mjs --url "http://127.0.0.1:$PORT" "$@" --cluster-pid $P \
    --json-out "bench/results/node-ref-$name.json" --quiet || true
  kill $P; wait $P 2>/dev/null || true
  rm -f "$log"
}
for rep in $(seq "$REPS"); do
  run_one "max-c200-$rep" --clients 200
  run_one "max-c1000-$rep" --clients 1000
done
run_one rate1000-c200 --clients 200 --mode rate --rate 1000
run_one rate200-c1000 --clients 1000 --mode rate --rate 200
run_one max-c200-raw --clients 200 --client raw
run_one max-c1000-raw --clients 1000 --client raw
