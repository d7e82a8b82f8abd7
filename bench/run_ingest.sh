#!/usr/bin/env bash
# Ingest benchmark, one command: starts a throwaway PostgreSQL 15 (durable defaults: fsync and
# synchronous_commit on) and a release TimeFusion (WAL fsync per group commit), both on local
# disk under a temp dir, runs bench/ingest.rs against both with the same rows, which it also
# writes as Arrow IPC files; then, with both servers stopped, ClickHouse (chdb, bench/baselines.py
# --ingest) INSERTs the same rows into a MergeTree, and `ingest --report` prints every system.
# Usage: bench/run_ingest.sh [--systems postgresql,timefusion,clickhouse] [ingest args, e.g.
# --statements 50 --single 5000]; figures land in $OUT (default bench/results).
set -euo pipefail
cd "$(dirname "$0")/.."
SYSTEMS=postgresql,timefusion,clickhouse
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --systems) SYSTEMS="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
want() { [[ ",$SYSTEMS," == *",$1,"* ]]; }
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}"
WORK="$(mktemp -d /tmp/timefusion-bench.XXXXXX)"
OUT="${OUT:-bench/results}"
VENV="${BENCH_VENV:-$HOME/.cache/timefusion/bench-venv}"
PG_PORT="${PG_PORT:-55433}"
TF_PORT="${TF_PORT:-55434}"
GRPC_PORT="${GRPC_PORT:-55435}"
# PostgreSQL refuses to run as root: use the postgres system user when we are root.
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop_tf() {
  if [ -n "${TF_PID:-}" ]; then kill "$TF_PID" 2>/dev/null || true; wait "$TF_PID" 2>/dev/null || true; TF_PID=; fi
}
stop_pg() {
  if [ -f "$WORK/pg/postmaster.pid" ]; then run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true; fi
}
cleanup() { stop_tf; stop_pg; rm -rf "$WORK"; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
chmod 755 "$WORK"
mkdir -p "$OUT"
RESULTS="$OUT/ingest-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

cargo build --release --bin timefusion --example ingest
# Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
if want clickhouse; then
  if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
  "$VENV/bin/pip" install -q -r bench/requirements.txt
fi

TARGETS=()
if want postgresql; then
  run_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
  run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c shared_buffers=1GB -c max_wal_size=4GB" -l "$WORK/pg.log" -w start >/dev/null
  TARGETS+=(--postgres "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres")
fi
if want timefusion; then
  mkdir -p "$WORK/tf"
  PGWIRE_PORT="$TF_PORT" GRPC_PORT="$GRPC_PORT" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn \
    "$BIN"/timefusion > "$WORK/tf.out" 2> "$WORK/tf.log" &
  TF_PID=$!
  for _ in $(seq 100); do grep -q "listening" "$WORK/tf.out" 2>/dev/null && break; sleep 0.1; done
  TARGETS+=(--timefusion "host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" --flight "http://127.0.0.1:$GRPC_PORT")
fi
want clickhouse && TARGETS+=(--clickhouse-dir "$WORK/clickhouse")

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); PostgreSQL: $("$PGBIN/postgres" --version); $(date -u +%F)"
"$BIN"/examples/ingest "${TARGETS[@]}" --results "$RESULTS" "${ARGS[@]}"
# ClickHouse runs alone: TimeFusion (its shutdown flush included) and PostgreSQL stopped first.
stop_tf
stop_pg
if want clickhouse; then
  "$VENV/bin/python" bench/baselines.py --ingest "$WORK/clickhouse" --chdb-dir "$WORK/chdb" --results "$RESULTS"
fi
echo
"$BIN"/examples/ingest --report "$RESULTS"
echo "figures: $RESULTS"
