#!/usr/bin/env bash
# Query benchmark, one command. Loads the same generated rows (default 10 M over 7 days) into
# TimeFusion, PostgreSQL 15 and ClickHouse (chdb), and times the dashboard queries of
# bench/queries.sql on each, plus DuckDB over TimeFusion's own Parquet files:
#   1. TimeFusion, every row still in the buffer (no flush during the load);
#   2. TimeFusion after a graceful restart has flushed everything to Delta (the time it took is
#      the lifecycle figure), first run cold, then warm;
#   3. TimeFusion again while live telemetry arrives over DoPut at --live-rate rows/s;
#   4. PostgreSQL (COPY, index on (project_id, timestamp), VACUUM ANALYZE), restarted, cold/warm;
#   5. DuckDB over the Delta table's live Parquet files, ClickHouse MergeTree (bench/baselines.py).
# Usage: bench/run_query.sh [--rows N] [--runs N] [--live-rate ROWS_PER_S] [--live-seconds N]
#                           [--systems timefusion,postgresql,duckdb,clickhouse];
# figures land in $OUT (default bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=10000000
RUNS=10
LIVE_RATE=50000
LIVE_SECONDS=60
SYSTEMS=timefusion,postgresql,duckdb,clickhouse
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --systems) SYSTEMS="$2"; shift 2 ;;
    --live-rate) LIVE_RATE="$2"; shift 2 ;;
    --live-seconds) LIVE_SECONDS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
WORK="$(mktemp -d /tmp/timefusion-query-bench.XXXXXX)"
OUT="${OUT:-bench/results}"
VENV="${BENCH_VENV:-$HOME/.cache/timefusion/bench-venv}"
PG_PORT="${PG_PORT:-55443}"
TF_PORT="${TF_PORT:-55444}"
GRPC_PORT="${GRPC_PORT:-55445}"
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_tf() {
  if [ -n "${TF_PID:-}" ]; then kill -TERM "$TF_PID" 2>/dev/null || true; wait "$TF_PID" 2>/dev/null || true; TF_PID=; fi
}
stop_pg() {
  if [ -f "$WORK/pg/postmaster.pid" ]; then run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true; fi
}
cleanup() { stop_tf; stop_pg; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
chmod 755 "$WORK"
mkdir -p "$OUT"
RESULTS="$OUT/query-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# Drops the OS page cache when allowed (root), so "cold" means read from disk.
drop_caches() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; echo "(page cache dropped)"; fi; }

start_tf() { # extra environment as arguments
  : > "$WORK/tf.out"
  env PGWIRE_PORT="$TF_PORT" GRPC_PORT="$GRPC_PORT" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
    TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=info "$@" \
    "$BIN"/timefusion >> "$WORK/tf.out" 2>> "$WORK/tf.log" &
  TF_PID=$!
  for _ in $(seq 600); do grep -q "listening" "$WORK/tf.out" 2>/dev/null && return; sleep 0.1; done
  echo "TimeFusion did not start:" >&2; tail -20 "$WORK/tf.log" >&2; exit 1
}

cargo build --release --bin timefusion --example query
# Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r bench/requirements.txt

END="$(date -u +%Y-%m-%dT%H:00:00Z)"
TF_CONN="host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres"
PG_CONN="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); $("$PGBIN/postgres" --version); $(date -u +%F)"

want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }

# 1. TimeFusion, all rows in the buffer: no scheduled flush, a buffer large enough for them.
if want timefusion || want duckdb; then
  mkdir -p "$WORK/tf"
  start_tf TIMEFUSION_BUFFER_MAX_MEMORY_MB="${TF_BUFFER_MB:-16384}" TIMEFUSION_FLUSH_INTERVAL_SECS=86400 \
    TIMEFUSION_BUFFER_RETENTION_MINS=1000000 TIMEFUSION_MAINTENANCE_INTERVAL_SECS=86400
  "$BIN"/examples/query load --rows "$ROWS" --end "$END" --flight "http://127.0.0.1:$GRPC_PORT" --params "$WORK/params.json"
  echo "TimeFusion RSS after load: $(( $(awk '/VmRSS/{print $2}' /proc/$TF_PID/status) / 1024 )) MiB"
  "$BIN"/examples/query run --system timefusion --phase buffer --conn "$TF_CONN" --params "$WORK/params.json" --runs "$RUNS" | tee "$WORK/run.out"
  tail -1 "$WORK/run.out" >> "$RESULTS"

  # 2. Graceful restart: the shutdown flush writes every row to Delta.
  started=$(date +%s%N)
  stop_tf
  echo "lifecycle: shutdown flush of $ROWS rows to Delta took $(( ($(date +%s%N) - started) / 1000000 )) ms"
  drop_caches
  # The Delta version holding exactly the loaded rows, for DuckDB (the live phase adds more).
  LOADED_VERSION=$(ls "$WORK/tf/tables/otel_logs_and_spans/_delta_log/" | sed -n 's/^0*\([0-9][0-9]*\)\.json$/\1/p' | sort -n | tail -1)
  start_tf TIMEFUSION_MAINTENANCE_INTERVAL_SECS=86400
  "$BIN"/examples/query run --system timefusion --phase delta --conn "$TF_CONN" --params "$WORK/params.json" --runs "$RUNS" | tee "$WORK/run.out"
  tail -1 "$WORK/run.out" >> "$RESULTS"

  # 3. The same queries while live telemetry arrives at a fixed rate (default flush policy).
  "$BIN"/examples/query load --live-rate "$LIVE_RATE" --live-seconds "$LIVE_SECONDS" --batch-rows 5000 \
    --flight "http://127.0.0.1:$GRPC_PORT" --params "$WORK/live-params.json" &
  LIVE_PID=$!
  sleep 5
  "$BIN"/examples/query run --system timefusion --phase ingest --conn "$TF_CONN" --params "$WORK/params.json" --runs "$RUNS" | tee "$WORK/run.out"
  tail -1 "$WORK/run.out" >> "$RESULTS"
  wait "$LIVE_PID"
  stop_tf
fi

# 4. PostgreSQL with the same rows (and the CSV file for ClickHouse).
if want postgresql || want clickhouse; then
  run_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
  pg_start() { run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c shared_buffers=4GB -c max_wal_size=8GB -c work_mem=64MB" -l "$WORK/pg.log" -w start >/dev/null; }
  pg_start
  CSV=(); want clickhouse && CSV=(--csv "$WORK/rows.csv")
  "$BIN"/examples/query load --rows "$ROWS" --end "$END" --postgres "$PG_CONN" "${CSV[@]}" --params "$WORK/params.json"
  stop_pg
  drop_caches
  pg_start
  "$BIN"/examples/query run --system postgresql --phase table --conn "$PG_CONN" --params "$WORK/params.json" --runs "$RUNS" | tee "$WORK/run.out"
  tail -1 "$WORK/run.out" >> "$RESULTS"
  stop_pg
fi

# 5. DuckDB over TimeFusion's Parquet, ClickHouse (chdb) MergeTree; then the report.
BASELINES=()
want duckdb && BASELINES+=(--delta "$WORK/tf/tables/otel_logs_and_spans" --delta-version "$LOADED_VERSION")
want clickhouse && BASELINES+=(--csv "$WORK/rows.csv" --chdb-dir "$WORK/chdb")
[ ${#BASELINES[@]} -gt 0 ] && "$VENV/bin/python" bench/baselines.py --params "$WORK/params.json" --runs "$RUNS" --results "$RESULTS" "${BASELINES[@]}"
"$VENV/bin/python" bench/baselines.py --report "$RESULTS"
echo "figures: $RESULTS"
