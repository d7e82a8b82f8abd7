# Sourced by bench/ab_doput.sh and bench/ab_single.sh: one fresh TimeFusion server per run from
# a release build in $BIN, and the server's CPU time and minor page faults over a run.
PG_PORT="${TF_PORT:-56434}"
FLIGHT_PORT="${GRPC_PORT:-56435}"

# Starts "$BIN/timefusion" on a new data directory $W; its pid is $P.
start_server() {
  W=$(mktemp -d /tmp/timefusion-ab.XXXXXX)
  PGWIRE_PORT="$PG_PORT" GRPC_PORT="$FLIGHT_PORT" PGWIRE_HOST=127.0.0.1 GRPC_HOST=127.0.0.1 \
    TIMEFUSION_DATA_DIR="$W" TIMEFUSION_LOG=warn "$BIN/timefusion" > "$W/out" 2> "$W/log" &
  P=$!
  for _ in $(seq 100); do grep -q listening "$W/out" 2>/dev/null && break; sleep 0.1; done
  read -r F0 U0 S0 < <(awk '{print $10, $14, $15}' "/proc/$P/stat")
}

# The server's user / sys CPU (1/100 s) and minor page faults since start_server.
server_usage() {
  local f1 u1 s1
  read -r f1 u1 s1 < <(awk '{print $10, $14, $15}' "/proc/$P/stat")
  echo "server user $((u1 - U0))cs sys $((s1 - S0))cs  page faults $((f1 - F0))"
}

stop_server() {
  kill "$P"
  wait "$P" || true
  rm -rf "$W"
}
