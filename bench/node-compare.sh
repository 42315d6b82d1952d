#!/bin/sh
# BENCHMARKS.md "Node workers (issue 11): three clusters side by side", every row.
# Needs: target/release/sio-cluster-host and sio-cluster-loadgen
# (cargo build --release -p sio-cluster-host -p sio-cluster-loadgen), the
# component transpiled for the Node host (cd host/node && npm ci && npm run build),
# bench/node_modules (cd bench && npm ci). ~8 min per command on 2 cores.
set -eu
cd "$(dirname "$0")/.."
# (a) Node workers on sio-cluster-host, (b) node-ref, (c) one socket.io process;
# rooms of 20 and of 2, max W=16 and a fixed rate (1000 / 2000 msg/s), 3 rounds.
node bench/node-compare.mjs --rounds 3 --tag main
# Before/after a change of host/node/src: put the old package in a copy
# (e.g. git worktree add /tmp/before <commit>, with its host/node built) and
# run both against the bound:
if [ -n "${BEFORE:-}" ]; then
  H="target/release/sio-cluster-host run --workers {N} --port {P} -- node"
  node bench/node-compare.mjs --rounds 3 --clusters a0,a,c --add "a0=$H $BEFORE/demo/worker.mjs" --tag before-after
fi
for f in bench/results/node-compare-*.json; do :; done
node bench/node-compare-table.mjs "$f"
