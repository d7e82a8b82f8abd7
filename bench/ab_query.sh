#!/usr/bin/env bash
# Query A/B between builds (or data layouts) on the same flushed rows, finer than
# bench/run_query.sh's p50 of ten runs: psql runs one query N times in a row against a server
# started on a data folder, once to warm up and once timed; the figures are the wall clock per
# query and the server's CPU (from /proc) over the timed pass.
#
#   bench/ab_query.sh load BIN DATA    # 10 M rows (bench/run_query.sh's data, fixed end) into DATA, flushed
#   bench/ab_query.sh run BIN DATA QUERY N
#   bench/ab_query.sh buffer BIN DATA N QUERY...   # the same rows left in the buffer (DATA emptied first)
#   bench/ab_query.sh rss BIN DATA QUERY N         # the server's RSS before and after N runs
#
# `buffer` loads the rows into a fresh server that keeps them all buffered, then for each QUERY
# times its first run (what the first query pays, e.g. building the id filters) and N runs after
# N untimed ones, and reports the buffer's bytes (`timefusion_memory`) after each first run; the
# server is killed at the end (no flush).
#
# BIN holds `timefusion` and `examples/query` from a release build (copy them aside to keep a
# build while another compiles); DATA is a folder of its own per build or layout. QUERY is a
# name from bench/queries.sql (TimeFusion's SQL, filled from DATA/params.json). Alternate the
# builds (A, B, A, B): this VM's speed drifts within minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=$1 BIN=$2 DATA=$3
PORT="${TF_PORT:-56444}"
GRPC="${GRPC_PORT:-56445}"

start() { # extra environment as arguments
  : > "$DATA/out"
  env PGWIRE_PORT="$PORT" GRPC_PORT="$GRPC" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
    TIMEFUSION_HTTP_PORT="${TF_HTTP_PORT:-56446}" TIMEFUSION_DATA_DIR="$DATA/data" \
    TIMEFUSION_LOG=warn TIMEFUSION_MAINTENANCE_INTERVAL_SECS=86400 "$@" \
    "$BIN/timefusion" >> "$DATA/out" 2>> "$DATA/log" &
  P=$!
  for _ in $(seq 300); do grep -q listening "$DATA/out" 2>/dev/null && return; sleep 0.1; done
  echo "TimeFusion did not start:" >&2; tail -20 "$DATA/log" >&2; exit 1
}
stop() { kill -TERM "$P"; wait "$P" || true; }
# TimeFusion's SQL of query $1, filled from DATA's parameters as bench/baselines.py fills it
# for the other systems.
query_sql() {
  python3 - "$1" "$DATA/params.json" <<'EOF'
import json, sys
sys.path.insert(0, "bench")
from baselines import QUERIES, fill, parse_queries
name, params = sys.argv[1], json.load(open(sys.argv[2]))
texts = dict(parse_queries(QUERIES.read_text())).get(name)
if texts is None:
    sys.exit(f"no query {name} in bench/queries.sql")
print(" ".join(fill(texts[""], params).split()) + ";")
EOF
}
trap 'kill -TERM "${P:-}" 2>/dev/null || true' EXIT

case "$MODE" in
  load)
    mkdir -p "$DATA"
    start TIMEFUSION_BUFFER_MAX_MEMORY_MB=16384 TIMEFUSION_FLUSH_INTERVAL_SECS=86400 \
      TIMEFUSION_BUFFER_RETENTION_MINS=1000000
    "$BIN/examples/query" load --rows 10000000 --end 2026-12-06T00:00:00Z \
      --flight "http://127.0.0.1:$GRPC" --params "$DATA/params.json"
    started=$(date +%s%N)
    stop # the shutdown flush writes every row to Delta
    echo "flushed in $(( ($(date +%s%N) - started) / 1000000 )) ms; $(du -sh "$DATA/data/tables" | cut -f1) of tables"
    ;;
  run)
    QUERY=$4 N=$5
    SQL=$(query_sql "$QUERY")
    start
    FILE=$(mktemp)
    for _ in $(seq "$N"); do echo "$SQL"; done > "$FILE"
    psql_run() { PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 -f "$FILE" > /dev/null; }
    psql_run
    read -r U0 S0 < <(awk '{print $14, $15}' "/proc/$P/stat")
    started=$(date +%s%N)
    psql_run
    ms=$(( ($(date +%s%N) - started) / 1000 ))
    read -r U1 S1 < <(awk '{print $14, $15}' "/proc/$P/stat")
    rm -f "$FILE"
    stop
    awk -v q="$QUERY" -v n="$N" -v us="$ms" -v cpu=$(( (U1 - U0 + S1 - S0) * 10 )) \
      'BEGIN { printf "%s x%d: %.1f ms a query, server CPU %.1f ms a query\n", q, n, us / 1000 / n, cpu / n }'
    ;;
  rss)
    # Memory a run leaves behind (a plan kept across runs must not grow): VmRSS after 200
    # warm-up runs and after N more.
    QUERY=$4 N=$5
    SQL=$(query_sql "$QUERY")
    start
    FILE=$(mktemp)
    psql_file() { PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 -f "$FILE" > /dev/null; }
    for _ in $(seq 200); do echo "$SQL"; done > "$FILE"
    psql_file
    R0=$(awk '/VmRSS/ {print $2}' "/proc/$P/status")
    for _ in $(seq "$N"); do echo "$SQL"; done > "$FILE"
    psql_file
    R1=$(awk '/VmRSS/ {print $2}' "/proc/$P/status")
    rm -f "$FILE"
    stop
    echo "$QUERY x$N: RSS $R0 -> $R1 kB ($(( (R1 - R0) * 1024 / N )) bytes a run)"
    ;;
  buffer)
    N=$4
    shift 4
    rm -rf "$DATA" && mkdir -p "$DATA"
    start TIMEFUSION_BUFFER_MAX_MEMORY_MB=16384 TIMEFUSION_FLUSH_INTERVAL_SECS=86400 \
      TIMEFUSION_BUFFER_RETENTION_MINS=1000000
    "$BIN/examples/query" load --rows 10000000 --end 2026-12-06T00:00:00Z \
      --flight "http://127.0.0.1:$GRPC" --params "$DATA/params.json" > /dev/null
    sql() { PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
    buffer_bytes() { sql -At -c "SELECT used_bytes FROM timefusion_memory WHERE consumer = 'buffer'"; }
    echo "buffer bytes after the load: $(buffer_bytes)"
    for QUERY in "$@"; do
      SQL=$(query_sql "$QUERY")
      started=$(date +%s%N)
      sql -c "$SQL" > /dev/null
      first=$(( ($(date +%s%N) - started) / 1000 ))
      FILE=$(mktemp)
      for _ in $(seq "$N"); do echo "$SQL"; done > "$FILE"
      sql -f "$FILE" > /dev/null
      started=$(date +%s%N)
      sql -f "$FILE" > /dev/null
      us=$(( ($(date +%s%N) - started) / 1000 ))
      rm -f "$FILE"
      awk -v q="$QUERY" -v n="$N" -v us="$us" -v first="$first" -v bytes="$(buffer_bytes)" \
        'BEGIN { printf "%s (buffer): first run %.1f ms, then x%d: %.1f ms a query; buffer bytes %s\n", q, first / 1000, n, us / 1000 / n, bytes }'
    done
    kill -9 "$P"; wait "$P" 2>/dev/null || true
    ;;
  *) echo "usage: $0 load|run|rss|buffer BIN DATA [QUERY N | N QUERY...]" >&2; exit 2 ;;
esac
