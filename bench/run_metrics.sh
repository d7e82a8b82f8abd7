#!/usr/bin/env bash
# otel_metrics queries, one command: a throwaway release TimeFusion (bench/servers.sh) takes
# 2.88 M counter points by InfluxDB line protocol, is restarted (the graceful stop flushes them
# to Delta), then bench/metrics_queries.py runs its three rate queries on TimeFusion (psycopg
# over pgwire), DuckDB and ClickHouse (chdb; in-process, on the same Parquet files). Needs the
# bench virtualenv of bench/run_query.sh (duckdb, chdb, pytz; BENCH_VENV) and the tests'
# (psycopg; PYTHON). TF_BIN: a timefusion binary instead of building; KEEP_WORK=1 keeps the data.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/servers.sh
BENCH_VENV="${BENCH_VENV:-$HOME/.cache/timefusion/bench-venv}"
HTTP_PORT="${HTTP_PORT:-56456}"
need_psycopg
find_tf_bin
END=$(( $(date +%s) / 3600 * 3600 ))
start_tf TIMEFUSION_HTTP_PORT="$HTTP_PORT"
"$PYTHON" bench/metrics_queries.py load "$HTTP_PORT" "$END"
stop_tf
start_tf TIMEFUSION_HTTP_PORT="$HTTP_PORT"
TABLE="$WORK/tf/tables/otel_metrics"
echo "Delta: $(find "$TABLE" -name '*.parquet' | wc -l) Parquet files, $(du -sh "$TABLE" | cut -f1)"
"$PYTHON" bench/metrics_queries.py timefusion "$TF_PORT" "$END"
"$BENCH_VENV/bin/python" bench/metrics_queries.py duckdb "$TABLE" "$END"
"$BENCH_VENV/bin/python" bench/metrics_queries.py clickhouse "$TABLE" "$END"
