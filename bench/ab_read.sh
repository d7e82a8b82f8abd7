#!/usr/bin/env bash
# A large text-format result over psql, for A/B comparisons of the result path (encoding and
# wire_text's rewrites): DoPut 1.31 M live rows into a fresh server of one build, then time
# RUNS reads of all of them as psql text (timestamp, a float, a string), discarding the output.
#
#   bench/ab_read.sh DIR RUNS
#
# DIR holds `timefusion` and `examples/ingest` from a release build (see bench/ab_doput.sh).
set -euo pipefail
BIN=$1 RUNS=$2
source "$(dirname "$0")/ab_server.sh"
start_server
"$BIN/examples/ingest" --flight "http://127.0.0.1:$FLIGHT_PORT" --statements 0 --single 0 --span-minutes 5 --batches 40 > /dev/null
QUERY="SELECT timestamp, duration::float8 / 3, name FROM otel_logs_and_spans"
for _ in $(seq "$RUNS"); do
  start=$(date +%s%N)
  PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc "$QUERY" > /dev/null
  echo "rows 1310720  seconds $(( ($(date +%s%N) - start) / 1000000 ))ms"
done
stop_server
