#!/usr/bin/env bash
# Single-row INSERT runs of one TimeFusion build, each against a fresh server, for A/B
# comparisons of the per-statement path: acknowledgement p50 / p99, rows/s, and the server's
# CPU time (user / sys, in 1/100 s) and page faults, which vary less between runs than latency.
#
#   bench/ab_single.sh DIR RUNS [INSERTS]
#
# DIR holds `timefusion` and `examples/ingest` from a release build, as for ab_doput.sh.
# Interleave two DIRs to compare builds.
set -euo pipefail
BIN=$1 RUNS=$2 INSERTS=${3:-3000}
source "$(dirname "$0")/ab_server.sh"
for _ in $(seq "$RUNS"); do
  start_server
  R=$("$BIN/examples/ingest" --timefusion "postgresql://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
    --statements 0 --batches 0 --single "$INSERTS" --span-minutes 5 \
    | awk '/^timefusion.*single-row/ {print "p50", $7, "ms  p99", $8, "ms  rows/s", $6; exit}')
  echo "$R  $(server_usage)"
  stop_server
done
