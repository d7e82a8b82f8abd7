#!/usr/bin/env bash
# OTLP ingest benchmark, one command: a throwaway release TimeFusion (bench/servers.sh: default
# settings, every acknowledged write fsynced by group commit, data on local disk under a temp
# dir), bench/otlp_ingest.rs against it (OTLP gRPC traces and logs, OTLP/HTTP traces, Arrow
# Flight DoPut of the same rows, then a row count check over pgwire), its report, then the
# server stopped and the temp dir removed.
# Usage: bench/run_otlp.sh [otlp_ingest args, e.g. --clients 8 --requests 50 --batch-rows 500
# --gzip]. TF_BIN: a timefusion binary (with `examples/otlp_ingest` beside it) instead of
# building; KEEP_WORK=1 keeps the data and the server's log. Ports: TF_PORT (pgwire),
# GRPC_PORT, HTTP_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/servers.sh
GRPC_PORT="${GRPC_PORT:-56455}"
HTTP_PORT="${HTTP_PORT:-56456}"
[ -n "${TF_BIN:-}" ] || cargo build --release --example otlp_ingest
find_tf_bin
start_tf GRPC_PORT="$GRPC_PORT" TIMEFUSION_HTTP_PORT="$HTTP_PORT"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(uname -sr); TimeFusion: $TF_BIN (client on the same machine); $(date -u +%F)"
"$(dirname "$TF_BIN")"/examples/otlp_ingest \
  --grpc "http://127.0.0.1:$GRPC_PORT" \
  --http "127.0.0.1:$HTTP_PORT" \
  --timefusion "host=127.0.0.1 port=$TF_PORT user=postgres password=postgres dbname=postgres" \
  --server-cores "$(nproc)" --server-pid "$TF_PID" "$@"
show_tf_log 20
