#!/usr/bin/env bash
# Runs every fuzz target for a bounded time on a copy of its committed
# corpus (fuzz/corpus/<target>); fails on the first crash, leak or timeout.
# Usage: bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 60 (what .ci/run uses); RELIABILITY.md
#                       gives the long runs' commands and figures.
# Needs cargo-fuzz (installed here from crates.io when missing) and runs on
# the stable toolchain through RUSTC_BOOTSTRAP=1 (libFuzzer's
# instrumentation flags are nightly-only).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(frame_decoder node_sequence packed_results link_codec sticky_http redis_inbound)
fi
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# -a: debug assertions (overflow checks: "counts never underflow").
# No sanitizer: the code under test is safe Rust; coverage is what we want.
flags=(-a --sanitizer none)
cargo fuzz build "${flags[@]}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "${work}/${t}"
  cp -r "corpus/${t}/." "${work}/${t}/" 2>/dev/null || true
  echo "== fuzz ${t} (${secs} s)"
  status=0
  cargo fuzz run "${flags[@]}" "${t}" "${work}/${t}" -- \
    -max_total_time="${secs}" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
    >"${work}/${t}.log" 2>&1 || status=$?
  grep -E "^#[0-9]+ +DONE|^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|INFO: seed corpus|^Done " "${work}/${t}.log" || true
  if [ "${status}" -ne 0 ]; then
    tail -n 60 "${work}/${t}.log"
    echo "fuzz target ${t} failed (exit ${status}; the input is under fuzz/artifacts/${t}/)"
    exit 1
  fi
done
echo "fuzz: ${#targets[@]} targets, ${secs} s each, no crash"
