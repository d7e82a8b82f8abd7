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
show_tf_log 40
echo
"$PYTHON" bench/write_shapes.py --report "$RESULTS"
echo "figures: $RESULTS"
exit "$STATUS"
