#!/usr/bin/env bash
# DoPut-only runs of one TimeFusion build, each against a fresh server, for A/B comparisons of
# the ingest path: rows/s, plus the server's CPU time (user / sys, in 1/100 s), its minor page
# faults (each a fresh page the kernel zeroed), WAL bytes and RSS after the run, which vary much
# less between runs here than rows/s does.
#
#   bench/ab_doput.sh DIR RUNS [ingest args]
#
# Timestamps span the last SPAN_MINUTES (default 5: live telemetry; 10080 is a 7-day backfill).
#
# DIR holds `timefusion` and `examples/ingest` from a release build (copy them out of
# target/release to keep a baseline). Interleave two DIRs to compare builds, e.g.
#   for r in 1 2 3; do bench/ab_doput.sh /tmp/a 1 --batches 40; bench/ab_doput.sh /tmp/b 1 --batches 40; done
set -euo pipefail
BIN=$1 RUNS=$2
shift 2
source "$(dirname "$0")/ab_server.sh"
for _ in $(seq "$RUNS"); do
  start_server
  R=$("$BIN/examples/ingest" --flight "http://127.0.0.1:$FLIGHT_PORT" --statements 0 --single 0 --span-minutes "${SPAN_MINUTES:-5}" "$@" \
    | awk '/Flight DoPut/ {print $6; exit}')
  echo "rows/s $R  $(server_usage)  wal $(du -sm "$W/wal" | cut -f1)MB  rss $(ps -o rss= -p "$P")KiB"
  stop_server
done
