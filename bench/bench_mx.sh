#!/usr/bin/env bash
# bench/bench_mx.sh - builds and runs bench_mx_txn (appservice endpoint vs a bare libmicrohttpd
# handler, same run) and prints the markdown row for docs/benchmarks.md. Not part of the tests.
#   bench/bench_mx.sh [SECONDS per round]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j"$(nproc)" --target bench_mx_txn >/dev/null
out=$(build-bench/bench/bench_mx_txn "$seconds")
echo "$out"
node -e '
const r = JSON.parse(process.argv[1]);
console.log(`| appservice transactions, ${r.events_per_txn} events (${r.body_bytes} B) each | ${r.endpoint_txn_per_s} txn/s (${r.endpoint_events_per_s} events/s) | bare MHD 200 {}: ${r.bare_txn_per_s} txn/s | ${r.overhead_ratio}x |`);
' "$out"
