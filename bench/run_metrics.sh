#!/usr/bin/env bash
# otel_metrics queries, one command: builds TimeFusion (release), starts a throwaway server,
# loads 2.88 M counter points by InfluxDB line protocol, restarts it (the graceful stop
# flushes them to Delta), then runs bench/metrics_queries.py's three rate queries on
# TimeFusion (psycopg over pgwire), DuckDB and ClickHouse (chdb; in-process, on the same
# Parquet files). Needs the bench virtualenv of bench/run_query.sh (duckdb, chdb, pytz) and the
# tests' (psycopg). BIN: a timefusion binary to use instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_VENV="${BENCH_VENV:-$HOME/.cache/timefusion/bench-venv}"
TEST_VENV="${TIMEFUSION_VENV:-$PWD/.venv}"
PORT="${TF_PORT:-57432}"
HTTP_PORT="${HTTP_PORT:-57434}"
WORK="$(mktemp -d /tmp/timefusion-metrics.XXXXXX)"
if [ -z "${BIN:-}" ]; then
  cargo build --release --bin timefusion
  BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/timefusion"
fi
start() {
  TIMEFUSION_DATA_DIR="$WORK/data" PGWIRE_PORT="$PORT" GRPC_PORT=0 TIMEFUSION_HTTP_PORT="$HTTP_PORT" \
    PGWIRE_HOST=127.0.0.1 TIMEFUSION_HTTP_HOST=127.0.0.1 TIMEFUSION_LOG=warn "$BIN" > "$WORK/out" 2>> "$WORK/log" &
  TF_PID=$!
  for _ in $(seq 300); do grep -q listening "$WORK/out" 2>/dev/null && return; sleep 0.1; done
  echo "TimeFusion did not start:" >&2; tail -20 "$WORK/log" >&2; exit 1
}
stop() { kill "$TF_PID" 2>/dev/null || true; wait "$TF_PID" 2>/dev/null || true; }
trap 'stop; rm -rf "$WORK"' EXIT
END=$(( $(date +%s) / 3600 * 3600 ))
start
"$TEST_VENV/bin/python" bench/metrics_queries.py load "$HTTP_PORT" "$END"
stop
start
TABLE="$WORK/data/tables/otel_metrics"
echo "Delta: $(find "$TABLE" -name '*.parquet' | wc -l) Parquet files, $(du -sh "$TABLE" | cut -f1)"
"$TEST_VENV/bin/python" bench/metrics_queries.py timefusion "$PORT" "$END"
"$BENCH_VENV/bin/python" bench/metrics_queries.py duckdb "$TABLE" "$END"
"$BENCH_VENV/bin/python" bench/metrics_queries.py clickhouse "$TABLE" "$END"
