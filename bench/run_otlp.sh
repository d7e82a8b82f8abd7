#!/usr/bin/env bash
# OTLP ingest benchmark, one command: builds TimeFusion and bench/otlp_ingest.rs in release
# mode, starts a throwaway TimeFusion (default settings: every acknowledged write fsynced by
# group commit) on local disk under a temp dir, runs bench/otlp_ingest.rs against it (OTLP gRPC
# traces and logs, OTLP/HTTP traces, Arrow Flight DoPut of the same rows, then a row count
# check over pgwire), prints its report, stops the server and removes the temp dir.
# Usage: bench/run_otlp.sh [otlp_ingest args, e.g. --clients 8 --requests 50 --batch-rows 500
# --gzip]. BIN_DIR: a directory holding `timefusion` and `examples/otlp_ingest` to use instead
# of building (e.g. target/debug for a quick check). KEEP_WORK=1 keeps the data directory and
# the server's log. Ports: TF_PORT (pgwire), GRPC_PORT, HTTP_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d /tmp/timefusion-otlp.XXXXXX)"
TF_PORT="${TF_PORT:-56454}"
GRPC_PORT="${GRPC_PORT:-56455}"
HTTP_PORT="${HTTP_PORT:-56456}"
stop_tf() {
  if [ -n "${TF_PID:-}" ]; then kill "$TF_PID" 2>/dev/null || true; wait "$TF_PID" 2>/dev/null || true; TF_PID=; fi
}
cleanup() { stop_tf; if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi; }
trap cleanup EXIT

if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release --bin timefusion --example otlp_ingest
  # Wherever cargo put it (CARGO_TARGET_DIR, a config's build.target-dir, or ./target).
  BIN_DIR="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
fi

mkdir -p "$WORK/tf"
PGWIRE_PORT="$TF_PORT" GRPC_PORT="$GRPC_PORT" TIMEFUSION_HTTP_PORT="$HTTP_PORT" PGWIRE_HOST=127.0.0.1 \
  GRPC_HOST=127.0.0.1 TIMEFUSION_HTTP_HOST=127.0.0.1 TIMEFUSION_DATA_DIR="$WORK/tf" TIMEFUSION_LOG=warn \
  "$BIN_DIR"/timefusion > "$WORK/tf.out" 2> "$WORK/tf.log" &
TF_PID=$!
for _ in $(seq 600); do
  grep -q "listening" "$WORK/tf.out" 2>/dev/null && break
  kill -0 "$TF_PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "listening" "$WORK/tf.out" 2>/dev/null; then
  echo "TimeFusion ($BIN_DIR/timefusion) did not start; its log:" >&2
  tail -50 "$WORK/tf.log" >&2
  exit 1
fi

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); TimeFusion: $BIN_DIR/timefusion (client on the same machine); $(date -u +%F)"
"$BIN_DIR"/examples/otlp_ingest \
  --grpc "http://127.0.0.1:$GRPC_PORT" \
  --http "127.0.0.1:$HTTP_PORT" \
  --timefusion "host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
  --server-cores "$(nproc)" --server-pid "$TF_PID" "$@"
if [ -s "$WORK/tf.log" ]; then
  echo
  echo "TimeFusion log (warnings and errors, last 20 lines):"
  tail -20 "$WORK/tf.log"
fi
