#!/usr/bin/env bash
# Ingest benchmark, one command: starts a throwaway PostgreSQL 15 (durable defaults: fsync and
# synchronous_commit on) and a release TimeFusion (WAL fsync per group commit), both on local
# disk under a temp dir, then runs bench/ingest.rs against both with the same rows.
# Extra arguments go to the benchmark (e.g. --statements 50 --single 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}"
WORK="$(mktemp -d /tmp/timefusion-bench.XXXXXX)"
PG_PORT="${PG_PORT:-55433}"
TF_PORT="${TF_PORT:-55434}"
GRPC_PORT="${GRPC_PORT:-55435}"
cleanup() {
  [ -n "${TF_PID:-}" ] && kill "$TF_PID" 2>/dev/null && wait "$TF_PID" 2>/dev/null || true
  if [ -f "$WORK/pg/postmaster.pid" ]; then run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# PostgreSQL refuses to run as root: use the postgres system user when we are root.
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
chmod 755 "$WORK"

cargo build --release --bin timefusion --example ingest
# Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"

run_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c shared_buffers=1GB -c max_wal_size=4GB" -l "$WORK/pg.log" -w start >/dev/null

mkdir -p "$WORK/tf"
PGWIRE_PORT="$TF_PORT" GRPC_PORT="$GRPC_PORT" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn \
  "$BIN"/timefusion > "$WORK/tf.out" 2> "$WORK/tf.log" &
TF_PID=$!
for _ in $(seq 100); do grep -q "listening" "$WORK/tf.out" 2>/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); PostgreSQL: $("$PGBIN/postgres" --version)"
"$BIN"/examples/ingest \
  --postgres "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres" \
  --timefusion "host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
  --flight "http://127.0.0.1:$GRPC_PORT" "$@"
