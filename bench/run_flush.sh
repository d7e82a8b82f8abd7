#!/usr/bin/env bash
# Flush benchmark, A/B: the time a TimeFusion binary takes to write its buffer to Delta. Each
# binary given (default: the current release build) starts on an empty data folder with a
# flush interval longer than the run, takes the same rows by COPY (real otel rows: JSON bodies
# and attributes, text[] hashes and summary; over --projects tenants and --days dates, so a
# flush writes projects × days partitions), and is stopped with SIGTERM: its final flush
# writes everything, and its log line "flushed to Delta" gives the rows and milliseconds.
# Ratios are against the first binary.
# Usage: bench/run_flush.sh [--rows N] [--projects P] [--days D] [--runs R] [BIN …]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=500000
PROJECTS=8
DAYS=2
RUNS=3
BINS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --projects) PROJECTS="$2"; shift 2 ;;
    --days) DAYS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    *) BINS+=("$1"); shift ;;
  esac
done
source bench/servers.sh
if [ ${#BINS[@]} -eq 0 ]; then
  find_tf_bin
  BINS=("$TF_BIN")
fi

python3 - "$WORK/rows.csv" "$ROWS" "$PROJECTS" "$DAYS" <<'EOF'
import csv, datetime, json, random, sys
path, rows, projects, days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
random.seed(7)
start = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) - datetime.timedelta(days=days + 1)
levels = ["INFO", "WARN", "ERROR", "DEBUG"]
with open(path, "w", newline="") as f:
    w = csv.writer(f)
    for i in range(rows):
        ts = start + datetime.timedelta(seconds=(i * days * 86400) // rows)
        project = f"project-{i % projects:03d}"
        body = json.dumps({"message": f"GET /api/items/{i % 977} took {i % 211} ms", "user": f"u{i % 5003}"})
        attributes = json.dumps({"http.method": "GET", "http.status_code": 200 + i % 4, "peer": f"10.0.{i % 256}.{i % 97}"})
        hashes = "{" + ",".join(f'"h{(i * 7 + k) % 100003:x}"' for k in range(3)) + "}"
        summary = "{" + f'"GET /api/items","status {200 + i % 4}"' + "}"
        w.writerow([project, ts.isoformat(), f"{i:012x}", f"GET /api/items/{i % 977}", levels[i % 4],
                    body, i % 5000, hashes, summary, attributes, f"svc-{i % 13}"])
EOF

TF_BIN="${BINS[0]}"
echo "$(machine_line)"
echo "rows: $ROWS over $PROJECTS projects x $DAYS days; runs per binary: $RUNS"
first=""
for bin in "${BINS[@]}"; do
  TF_BIN="$bin"
  total=0
  for run in $(seq "$RUNS"); do
    rm -rf "$WORK/tf"
    start_tf TIMEFUSION_LOG=info TIMEFUSION_FLUSH_INTERVAL_SECS=3600 TIMEFUSION_BUFFER_RETENTION_MINS=600 \
      PGWIRE_PASSWORD= PGWIRE_INSECURE_NO_PASSWORD=true
    psql -h 127.0.0.1 -p "$TF_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 -c "\\copy otel_logs_and_spans (project_id, timestamp, id, name, level, body, duration, hashes, summary, attributes, resource___service___name) FROM '$WORK/rows.csv' WITH (FORMAT csv)"
    stop_tf
    line="$(grep 'flushed to Delta' "$WORK/tf.log" | tail -1)"
    ms="$(sed -n 's/.*elapsed_ms=\([0-9]*\).*/\1/p' <<<"$line")"
    flushed="$(sed -n 's/.* rows=\([0-9]*\).*/\1/p' <<<"$line")"
    if [ "$flushed" != "$ROWS" ]; then
      echo "$bin flushed ${flushed:-no} rows, not $ROWS; its log:" >&2
      tail -20 "$WORK/tf.log" >&2
      exit 1
    fi
    echo "$bin run $run: final flush of $flushed rows in $ms ms"
    total=$((total + ms))
  done
  mean=$((total / RUNS))
  if [ -z "$first" ]; then first=$mean; fi
  echo "$bin: mean $mean ms ($(awk -v a="$mean" -v b="$first" 'BEGIN { printf "%.2f", a / b }')x the first binary)"
done
