#!/usr/bin/env bash
# Smoke test of the bench tooling (< 1 minute), for CI: the Node reference
# cluster passes the contract check (websocket and polling), and a --quick
# compare runs end to end. Cluster A is the Node reference unless
# SMOKE_A="<command with {N} and {P}>" is given (e.g. our demo cluster).
#   usage: bench/smoke.sh        env: SMOKE_PORT (default 3290), SMOKE_A
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then sed -n 2,7p "$0"; exit 0; fi
[ -d node_modules ] || npm ci --no-audit --no-fund
PORT=${SMOKE_PORT:-3290}
LOG=$(mktemp)
node node-ref/primary.js --workers 2 --port "$PORT" >"$LOG" 2>&1 &
P=$!
trap 'kill $P 2>/dev/null || true; wait $P 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do grep -q "node-ref ready" "$LOG" && break; sleep 0.1; done
grep -q "node-ref ready" "$LOG" || { echo "smoke: node-ref did not start:"; cat "$LOG"; exit 1; }
node contract-check.mjs --url "http://127.0.0.1:$PORT" --workers 2 | grep -E '^(FAIL|note)|checks passed'
node contract-check.mjs --url "http://127.0.0.1:$PORT" --workers 2 --transport polling | grep -E '^(FAIL|note)|checks passed'
node load.mjs --url "http://127.0.0.1:$PORT" --clients 50 --warmup 0.5 --duration 1 --mode rate --rate 200 --cluster-pid "$P" --quiet
kill $P; wait $P 2>/dev/null || true
REF='node bench/node-ref/primary.js --workers {N} --port {P}'
A=${SMOKE_A:-$REF}
node compare.mjs --quick --port $((PORT + 1)) --a "$A" --out "$(mktemp -d)/smoke.json" | tail -4
echo "smoke: ok"
