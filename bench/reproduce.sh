#!/usr/bin/env bash
# The whole comparison of BENCHMARKS.md in one command, from the repository
# root on a fresh machine (Rust and Node.js installed):
#
#   bash bench/reproduce.sh
#
# 1. release build of the host and the load client (~17 min the first time);
# 2. ours vs the Node reference with W=64 (200-1000 clients, the load that
#    saturates both), W=16 and W=4 (100-1000 clients), each capped at 8
#    minutes (~3-4 minutes each on 2 cores), and the plot of the W=16 run;
# 3. the criterion benches: component vs native, hub relay vs raw pipe
#    (~6 minutes together). About 20 minutes in all after the first build.
# Results: bench/results/compare-*.json, bench/plot.png, target/criterion/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p sio-cluster-host -p sio-cluster-loadgen

latest() { ls -t bench/results/compare-*.json | head -1; }

node bench/compare.mjs --client rust --window 64 --clients 200,500,1000 --max-minutes 8
w64=$(latest)
node bench/compare.mjs --client rust --window 16 --max-minutes 8
w16=$(latest)
node bench/compare.mjs --client rust --window 4 --max-minutes 8
target/release/sio-cluster-loadgen plot --input "$w16" --output bench/plot.png

cargo bench --locked -p sio-cluster-host --bench adapter
cargo bench --locked -p sio-cluster-host --bench relay

echo
echo "criterion medians (ns):"
for f in $(find target/criterion/adapter target/criterion/relay -path '*/new/estimates.json' | sort); do
  name=${f#target/criterion/}
  name=${name%/new/estimates.json}
  node -e 'const e = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(process.argv[2].padEnd(48), e.median.point_estimate.toFixed(1))' "$f" "$name"
done
echo "compare results: $w64 (W=64), $w16 (W=16), $(latest) (W=4); plot: bench/plot.png"
