#!/usr/bin/env bash
# Write shapes, one command: starts a throwaway PostgreSQL 15 (durable defaults: fsync and
# synchronous_commit on, shared_buffers=1GB) and a TimeFusion (default settings: every
# acknowledged write fsynced by group commit), both on local disk under a temp dir, and runs
# bench/write_shapes.py (psycopg 3: executemany, single-row parameterized INSERTs from 1..N
# connections, literal multi-row INSERTs, COPY) and bench/WriteShapesJdbc.java (pgjdbc batches)
# against both, then write_shapes.py --report with the ratios TimeFusion / PostgreSQL.
# Usage: bench/run_write_shapes.sh [write_shapes.py args, e.g. --rows 2000 --single 2000
# --writers 1,8,32 --shapes executemany_arrays copy_arrays]; figures land in $OUT (default
# bench/results). TF_BIN: a TimeFusion binary to use instead of building the release one.
# PYTHON: a python with psycopg 3 (default the tests' venv, ~/.cache/timefusion/venv).
# Then, when java and pgjdbc ($PGJDBC_JAR, default /usr/share/java/postgresql.jar) are there,
# bench/WriteShapesJdbc.java against both (JDBC_ROWS: its rows per shape, default the --rows
# given, else 2000; JDBC_BATCH: rows per executeBatch, default 500; JDBC=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/servers.sh
OUT="${OUT:-bench/results}"
mkdir -p "$OUT"
RESULTS="$OUT/write-shapes-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
need_psycopg
find_tf_bin
start_pg
start_tf
machine_line
STATUS=0
"$PYTHON" bench/write_shapes.py \
  --target postgresql="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
  --target timefusion="host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
  --results "$RESULTS" "$@" || STATUS=$?
# Then pgbench -M prepared of bench/single_insert.pgbench on 1, 8 and 32 connections against
# both (PGBENCH=0 skips it; PGBENCH_CLIENTS, PGBENCH_ROWS): tps, latency, server CPU a row.
# The pgjdbc side (bench/WriteShapesJdbc.java: executeBatch in a transaction and in autocommit)
# into the same results file. Rows: $JDBC_ROWS, else the --rows given above, else 2000.
JAR="${PGJDBC_JAR:-/usr/share/java/postgresql.jar}"
if [ "${JDBC:-1}" = 0 ]; then
  echo; echo "JDBC=0: pgjdbc shapes skipped"
elif ! command -v java >/dev/null 2>&1 || [ ! -f "$JAR" ]; then
  echo; echo "note: pgjdbc shapes skipped: needs java (17+) and $JAR (Debian: apt-get install default-jre-headless libpostgresql-jdbc-java; or set PGJDBC_JAR)"
else
  jdbc_rows="${JDBC_ROWS:-}"
  if [ -z "$jdbc_rows" ]; then
    prev=
    for a in "$@"; do
      case "$a" in --rows=*) jdbc_rows="${a#--rows=}" ;; esac
      [ "$prev" = --rows ] && jdbc_rows="$a"
      prev="$a"
    done
  fi
  echo
  java -cp "$JAR" bench/WriteShapesJdbc.java \
    --target postgresql="jdbc:postgresql://127.0.0.1:$PG_PORT/postgres?user=postgres&password=postgres" \
    --target timefusion="jdbc:postgresql://127.0.0.1:$TF_PORT/postgres?user=postgres&password=postgres" \
    --results "$RESULTS" --rows "${jdbc_rows:-2000}" --batch "${JDBC_BATCH:-500}" || STATUS=$?
fi
# pgbench: the parameterized single-row INSERT (bench/single_insert.pgbench, one prepared
# statement) from a C client on 1, 8 and 32 connections ($PGBENCH_CLIENTS), $PGBENCH_ROWS rows
# each (default 16000; 3000 on one connection). 32 Python threads spend more CPU a row than
# either server, so the psycopg shapes above measure the client; this one leaves the cores to
# the servers. PGBENCH=0 skips it. Reports tps, average latency and the server's CPU a row
# (PostgreSQL: the postmaster and its children, ended backends included).
if [ "${PGBENCH:-1}" != 0 ] && command -v pgbench >/dev/null 2>&1; then
  TICK=$(getconf CLK_TCK)
  ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat"; }
  pg_ticks() {
    local pm t
    pm=$(head -1 "$WORK/pg/postmaster.pid")
    t=$(ticks "$pm")
    for c in $(pgrep -P "$pm"); do t=$((t + $(ticks "$c" 2>/dev/null || echo 0))); done
    echo "$t"
  }
  tf_ticks() { ticks "$TF_PID"; }
  echo
  echo "pgbench -M prepared -f bench/single_insert.pgbench (after 1,600 untimed):"
  printf '%-11s %8s %10s %12s %16s\n' target clients tps "avg ms" "server µs/row"
  for target in postgresql timefusion; do
    if [ "$target" = postgresql ]; then port=$PG_PORT; count=pg_ticks; else port=$TF_PORT; count=tf_ticks; fi
    PGPASSWORD=postgres pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c 8 -j 2 -t 200 \
      -f bench/single_insert.pgbench postgres >/dev/null 2>&1 || STATUS=1
    for c in ${PGBENCH_CLIENTS:-1 8 32}; do
      rows=${PGBENCH_ROWS:-16000}; [ "$c" = 1 ] && rows=$((rows < 3000 ? rows : 3000))
      t=$((rows / c))
      before=$($count)
      out=$(PGPASSWORD=postgres pgbench -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c "$c" -j 2 \
        -t "$t" -f bench/single_insert.pgbench postgres 2>&1) || { echo "$out" | tail -5; STATUS=1; continue; }
      after=$($count)
      printf '%-11s %8s %10s %12s %16s\n' "$target" "$c" "$(echo "$out" | grep -oP 'tps = \K[0-9.]+')" \
        "$(echo "$out" | grep -oP 'latency average = \K[0-9.]+')" \
        "$(( (after - before) * 1000000 / TICK / (c * t) ))"
    done
  done
fi
show_tf_log 40
echo
"$PYTHON" bench/write_shapes.py --report "$RESULTS"
echo "figures: $RESULTS"
exit "$STATUS"
