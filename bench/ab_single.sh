#!/usr/bin/env bash
# Single-row INSERT runs of one TimeFusion build, each against a fresh server, for A/B
# comparisons of the per-statement path: acknowledgement p50 / p99, rows/s, and the server's
# CPU time (user / sys, in 1/100 s), which varies less between runs than latency does.
#
#   bench/ab_single.sh DIR RUNS [INSERTS]
#
# DIR holds `timefusion` and `examples/ingest` from a release build, as for ab_doput.sh.
# Interleave two DIRs to compare builds.
set -euo pipefail
BIN=$1 RUNS=$2 INSERTS=${3:-3000}
for _ in $(seq "$RUNS"); do
  W=$(mktemp -d /tmp/timefusion-ab.XXXXXX)
  PGWIRE_PORT="${TF_PORT:-56434}" GRPC_PORT="${GRPC_PORT:-56435}" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
    TIMEFUSION_DATA_DIR="$W" TIMEFUSION_LOG=warn "$BIN/timefusion" > "$W/out" 2> "$W/log" &
  P=$!
  for _ in $(seq 100); do grep -q listening "$W/out" 2>/dev/null && break; sleep 0.1; done
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$P/stat")
  R=$("$BIN/examples/ingest" --timefusion "postgresql://postgres:postgres@127.0.0.1:${TF_PORT:-56434}/postgres" \
    --statements 0 --batches 0 --single "$INSERTS" --span-minutes 5 \
    | awk '/^timefusion.*single-row/ {print "p50", $7, "ms  p99", $8, "ms  rows/s", $6; exit}')
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$P/stat")
  echo "$R  server user $((u1 - u0))cs sys $((s1 - s0))cs"
  kill "$P"
  wait "$P" || true
  rm -rf "$W"
done
