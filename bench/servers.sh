# Throwaway servers for the side-by-side benchmarks, sourced by bench/run_*.sh: a PostgreSQL 15
# (durable defaults: fsync and synchronous_commit on, shared_buffers=1GB) and a TimeFusion
# (defaults plus what the caller passes as VAR=value arguments), both on local disk under
# $WORK, both stopped and $WORK removed on exit (KEEP_WORK=1 keeps it).
#
#   source bench/servers.sh          # sets WORK, PYTHON, PG_PORT, TF_PORT; traps EXIT
#   need_psycopg                     # exits with advice when $PYTHON has no psycopg 3
#   find_tf_bin                      # TF_BIN, or builds the release binary and sets TF_BIN
#   start_pg                         # PostgreSQL on $PG_PORT (socket dir $WORK)
#   start_tf [VAR=value …]           # TimeFusion on $TF_PORT, data in $WORK/tf
#   start_s3                         # SeaweedFS (`weed mini`, from the test venv) on $S3_PORT,
#                                    # bucket "bench"; sets S3_ENV (VAR=value for start_tf)
#   machine_line                     # one line: cores, RAM, kernel, versions, date
#   show_tf_log N                    # the last N lines of TimeFusion's log, if it logged any
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)}"
WORK="$(mktemp -d /tmp/timefusion-bench.XXXXXX)"
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
stop_s3() {
  # weed mini does not stop promptly on SIGTERM; its data is throwaway, so SIGKILL.
  if [ -n "${S3_PID:-}" ]; then kill -9 "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; S3_PID=; fi
}
cleanup() { stop_tf; stop_pg; stop_s3; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT
[ "$(id -u)" = 0 ] && chown -R postgres "$WORK"
chmod 755 "$WORK"

need_psycopg() {
  if [ ! -x "$PYTHON" ] || ! "$PYTHON" -c 'import psycopg' 2>/dev/null; then
    echo "no psycopg 3 in $PYTHON: run scripts/test-deps.sh, or set PYTHON to a python with psycopg[binary] (tests/requirements.txt)" >&2
    exit 1
  fi
}

find_tf_bin() {
  if [ -z "${TF_BIN:-}" ]; then
    cargo build --release --bin timefusion
    # Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
    TF_BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/timefusion"
  fi
}

start_pg() {
  run_pg "$PGBIN/initdb" -D "$WORK/pg" -U postgres --auth=trust >/dev/null
  run_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -o "-p $PG_PORT -k $WORK -c shared_buffers=1GB -c max_wal_size=4GB" -l "$WORK/pg.log" -w start >/dev/null
}

start_tf() {
  mkdir -p "$WORK/tf"
  env PGWIRE_PORT="$TF_PORT" GRPC_PORT=0 TIMEFUSION_HTTP_PORT=0 PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
    TIMEFUSION_HTTP_HOST=127.0.0.1 TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn "$@" \
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
}

S3_PORT="${S3_PORT:-56445}"
start_s3() {
  local weed="${WEED:-$(dirname "$PYTHON")/weed}"
  [ -x "$weed" ] || { echo "no weed at $weed: run scripts/test-deps.sh, or set WEED" >&2; exit 1; }
  mkdir -p "$WORK/weed"
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret "$weed" mini -dir="$WORK/weed" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" -bucket=bench > "$WORK/weed.log" 2>&1 &
  S3_PID=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.2; done
  sleep 1
  S3_ENV=(AWS_S3_BUCKET=bench AWS_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true
    AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret)
}

machine_line() {
  echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); PostgreSQL: $("$PGBIN/postgres" --version); TimeFusion: $TF_BIN; $(date -u +%F)"
}

show_tf_log() {
  if [ -s "$WORK/tf.log" ]; then
    echo
    echo "TimeFusion log (warnings and errors, last $1 lines):"
    tail -"$1" "$WORK/tf.log"
  fi
}
