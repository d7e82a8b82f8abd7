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
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}"
WORK="$(mktemp -d /tmp/timefusion-write-shapes.XXXXXX)"
OUT="${OUT:-bench/results}"
PYTHON="${PYTHON:-$HOME/.cache/timefusion/venv/bin/python}"
PG_PORT="${PG_PORT:-56433}"
TF_PORT="${TF_PORT:-56434}"
# PostgreSQL refuses to run as root: use the postgres system user when we are root.
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_tf() {
  if [ -n "${TF_PID:-}" ]; then kill "$TF_PID" 2>/dev/null || true; wait "$TF_PID" 2>/dev/null || true; TF_PID=; fi
}
stop_pg() {
  if [ -f "$WORK/pg/postmaster.pid" ]; then run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true; fi
}
cleanup() { stop_tf; stop_pg; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
chmod 755 "$WORK"
mkdir -p "$OUT"
RESULTS="$OUT/write-shapes-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

if [ ! -x "$PYTHON" ] || ! "$PYTHON" -c 'import psycopg' 2>/dev/null; then
  echo "no psycopg 3 in $PYTHON: run scripts/test-deps.sh, or set PYTHON to a python with psycopg[binary] (tests/requirements.txt)" >&2
  exit 1
fi
if [ -z "${TF_BIN:-}" ]; then
  cargo build --release --bin timefusion
  # Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
  TF_BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/timefusion"
fi

run_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c shared_buffers=1GB -c max_wal_size=4GB" -l "$WORK/pg.log" -w start >/dev/null

mkdir -p "$WORK/tf"
PGWIRE_PORT="$TF_PORT" GRPC_PORT=0 TIMEFUSION_HTTP_PORT=0 PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 TIMEFUSION_HTTP_HOST=127.0.0.1 \
  TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn \
  "$TF_BIN" > "$WORK/tf.out" 2> "$WORK/tf.log" &
TF_PID=$!
for _ in $(seq 600); do
  grep -q "listening" "$WORK/tf.out" 2>/dev/null && break
  kill -0 "$TF_PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "listening" "$WORK/tf.out" 2>/dev/null; then
  echo "TimeFusion ($TF_BIN) did not start; its log:" >&2
  tail -50 "$WORK/tf.log" >&2
  exit 1
fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); PostgreSQL: $("$PGBIN/postgres" --version); TimeFusion: $TF_BIN; $(date -u +%F)"
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
if [ -s "$WORK/tf.log" ]; then
  echo
  echo "TimeFusion log (warnings and errors, last 40 lines):"
  tail -40 "$WORK/tf.log"
fi
echo
"$PYTHON" bench/write_shapes.py --report "$RESULTS"
echo "figures: $RESULTS"
exit "$STATUS"
