#!/usr/bin/env bash
# Memory benchmark (issue 26): one TimeFusion release build on a fresh data folder, driven at
# the machine's maximum by DoPut streams and COPY connections (real otel rows over two days by
# default) plus a tenant-wide query every second, its RSS sampled from /proc every 100 ms.
# Then the server is killed with SIGKILL, restarted on the same folder, and the table must hold
# exactly the rows that were acknowledged (nothing lost, nothing doubled).
#
#   bench/run_memory.sh [--secs N] [--span-minutes M] [--streams S] [--copies C] [--s3] [VAR=value …]
#
# --s3 keeps the tables in a SeaweedFS bucket (bench/servers.sh start_s3) instead of a folder.
#
# VAR=value pairs go to the server's environment, e.g. TIMEFUSION_MEMORY_LIMIT_MB=512; the
# report is one JSON line (bench/memory.rs) plus the restart check. TF_BIN picks the binary
# (default: the current release build); an `examples/memory` beside it is the load generator.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=300 SPAN=2880 STREAMS=8 COPIES=4
ENVS=() S3=
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) SECS="$2"; shift 2 ;;
    --span-minutes) SPAN="$2"; shift 2 ;;
    --streams) STREAMS="$2"; shift 2 ;;
    --copies) COPIES="$2"; shift 2 ;;
    --s3) S3=1; shift ;;
    *=*) ENVS+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
source bench/servers.sh
GIVEN_BIN="${TF_BIN:-}"
find_tf_bin
# The load generator from a given TF_BIN's own build when it sits beside it (a copied-out
# build keeps `examples/memory` next to `timefusion`); otherwise built here, where cargo puts it.
MEMORY="${GIVEN_BIN:+$(dirname "$GIVEN_BIN")/examples/memory}"
if [ ! -x "${MEMORY:-/nonexistent}" ]; then
  cargo build --release --example memory
  MEMORY="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples/memory"
fi

echo "$(machine_line)"
if [ -n "$S3" ]; then start_s3; ENVS+=("${S3_ENV[@]}"); fi
echo "server environment: ${ENVS[*]:-(defaults)}; ${SECS}s, $STREAMS DoPut streams, $COPIES COPY connections, timestamps over $SPAN minutes${S3:+, tables in S3 (SeaweedFS)}"
start_tf PGWIRE_PASSWORD= PGWIRE_INSECURE_NO_PASSWORD=true GRPC_PORT="$((TF_PORT + 1))" "${ENVS[@]}"
URL="host=127.0.0.1 port=$TF_PORT user=postgres"
REPORT="$("$MEMORY" --timefusion "$URL" --flight "http://127.0.0.1:$((TF_PORT + 1))" --pid "$TF_PID" \
  --secs "$SECS" --span-minutes "$SPAN" --streams "$STREAMS" --copies "$COPIES")"
echo "$REPORT"
ACKED="$(sed -n 's/.*"rows_acknowledged":\([0-9]*\).*/\1/p' <<<"$REPORT")"
kill -9 "$TF_PID"; wait "$TF_PID" 2>/dev/null || true; TF_PID=
T0=$(date +%s%N)
start_tf PGWIRE_PASSWORD= PGWIRE_INSECURE_NO_PASSWORD=true GRPC_PORT="$((TF_PORT + 1))" "${ENVS[@]}"
echo "restart after SIGKILL: ready in $(( ($(date +%s%N) - T0) / 1000000 )) ms, peak RSS $(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$TF_PID/status) MB"
"$MEMORY" --timefusion "$URL" --expect "$ACKED"
show_tf_log 10
