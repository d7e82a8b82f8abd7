#!/usr/bin/env bash
# COPY … TO STDOUT of the same rows, binary and text, from a fresh server of one TimeFusion
# build (and, with PG_DSN, from a PostgreSQL), read by psql into /dev/null: median wall seconds
# of RUNS per format and the bytes sent.
#
#   bench/ab_copy_out.sh DIR RUNS [ROWS] [PG_DSN]
#
# DIR holds `timefusion` from a release build, as for ab_doput.sh. ROWS (default 400,000)
# rows of 10 otel_logs_and_spans columns (text, timestamptz, int8, int4, a 2-element text[],
# JSON text) are loaded by COPY FROM STDIN; on PostgreSQL into a table `copy_out` of the same
# column types (dropped first). Run two DIRs one after the other to compare builds.
set -euo pipefail
BIN=$1 RUNS=$2 ROWS=${3:-400000} PG_DSN=${4:-}
source "$(dirname "$0")/ab_server.sh"
COLUMNS="project_id, timestamp, id, name, level, duration, hashes, body, attributes___client___port, start_time"
DATA=$(mktemp /tmp/copy-out.XXXXXX)
trap 'rm -f "$DATA"' EXIT
python3 - "$ROWS" > "$DATA" <<'PY'
import datetime, sys
base = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
for i in range(int(sys.argv[1])):
    ts = (base + datetime.timedelta(microseconds=i * 500)).isoformat()
    print(f'copy-out\t{ts}\tid-{i:09d}\tspan {i % 100}\tINFO\t{i * 10}\t{{h{i},k{i % 7}}}\t{{"msg":"hello {i}"}}\t{i % 24}\t{ts}')
PY

# Median seconds of RUNS `\copy (query) TO /dev/null` in format $2 against conninfo $1.
measure() {
  local conn=$1 fmt=$2 query=$3 times=()
  for _ in $(seq "$RUNS"); do
    local s e
    s=$(date +%s.%N)
    psql "$conn" -X -q -c "\\copy ($query) TO '/dev/null' WITH (FORMAT $fmt)"
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc)")
  done
  local median
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  local bytes
  bytes=$(psql "$conn" -X -q -c "\\copy ($query) TO STDOUT WITH (FORMAT $fmt)" | wc -c)
  echo "$fmt: median $median s of $RUNS, $bytes bytes"
}

start_server
TF="host=127.0.0.1 port=$PG_PORT user=postgres"
export PGPASSWORD=postgres
psql "$TF" -X -q -c "\\copy otel_logs_and_spans ($COLUMNS) FROM '$DATA'"
echo "timefusion ($BIN), $ROWS rows"
for fmt in binary text; do
  measure "$TF" $fmt "SELECT $COLUMNS FROM otel_logs_and_spans WHERE project_id = 'copy-out'"
done
echo "$(server_usage)"
stop_server
if [ -n "$PG_DSN" ]; then
  psql "$PG_DSN" -X -q -c "DROP TABLE IF EXISTS copy_out" -c "CREATE TABLE copy_out (project_id text, timestamp timestamptz, id text, name text, level text, duration bigint, hashes text[], body text, attributes___client___port int, start_time timestamptz)"
  psql "$PG_DSN" -X -q -c "\\copy copy_out ($COLUMNS) FROM '$DATA'"
  echo "postgresql ($PG_DSN), $ROWS rows"
  for fmt in binary text; do
    measure "$PG_DSN" $fmt "SELECT $COLUMNS FROM copy_out WHERE project_id = 'copy-out'"
  done
fi
