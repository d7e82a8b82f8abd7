#!/usr/bin/env bash
# UPDATE and DELETE side by side, one command: a throwaway PostgreSQL 15 and a TimeFusion
# (TIMEFUSION_FLUSH_INTERVAL_SECS=1, so yesterday's rows reach Delta before the updates) on
# local disk (bench/servers.sh), then bench/mutations.py against both and its --report.
# Usage: bench/run_mutations.sh [mutations.py args, e.g. --day-rows 100000 --updates 1000
# --small-updates 10000]; figures land in $OUT (default bench/results). TF_BIN: a TimeFusion
# binary to use instead of building the release one. PYTHON: a python with psycopg 3.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/servers.sh
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
RESULTS="$OUT/mutations-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
need_psycopg
find_tf_bin
start_pg
start_tf TIMEFUSION_FLUSH_INTERVAL_SECS=1
machine_line
STATUS=0
"$PYTHON" bench/mutations.py \
  --target postgresql="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
  --target timefusion="host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
  --results "$RESULTS" "$@" || STATUS=$?
show_tf_log 20
echo
"$PYTHON" bench/mutations.py --report "$RESULTS"
echo "figures: $RESULTS"
exit "$STATUS"
