#!/usr/bin/env bash
# Installs what the tests need on a fresh machine: psql, openssl, pgjdbc and a JDK, Go with pgx
# (Debian's v4 sources, built in GOPATH mode: the Go module proxy is not reachable here), Prometheus,
# Node's `pg` under tests/node (and its newest release under tests/node-latest), and a Python virtualenv (`$TIMEFUSION_VENV`, default `.venv`) with
# delta-rs `deltalake`, pyarrow, ADBC, psycopg, SQLAlchemy, asyncpg, the OpenTelemetry SDK with its
# OTLP exporters and SeaweedFS, the S3 server the S3
# tests start as a process, and a second one (`$TIMEFUSION_VENV_LATEST`, default `$VENV-latest`)
# with the newest release of each Postgres client. The tests find the virtualenvs the same way
# (tests/e2e/common/mod.rs `venv_bin`, `python_latest`).
# The README's test command: `scripts/test-deps.sh && cargo test`. Without what this installs
# beyond psql and openssl, `cargo test -- --skip external::` runs the rest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# make: jemalloc, the server's allocator, is built from source by tikv-jemalloc-sys.
command -v make >/dev/null 2>&1 || missing+=(make)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/jackc/pgx ] || missing+=(golang-github-jackc-pgx-v4-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} for the build and the end-to-end tests (make for jemalloc; psql; openssl for the TLS test's certificate; pgjdbc and a JDK; Node for node-postgres; Go and pgx)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}";
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}"; fi
fi

# Prometheus, the remote-write client of tests/e2e/external/prometheus.rs (without the
# packages it recommends: node-exporter and the like).
if ! command -v prometheus >/dev/null 2>&1; then
  echo "installing prometheus for the remote-write test"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus;
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; fi
fi

VENV="${TIMEFUSION_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
# The newest release of each client, upgraded on every run (tests/requirements-latest.txt).
VENV_LATEST="${TIMEFUSION_VENV_LATEST:-$VENV-latest}"
if [ ! -x "$VENV_LATEST/bin/python" ]; then
  python3 -m venv "$VENV_LATEST"
fi
"$VENV_LATEST/bin/pip" install --quiet --disable-pip-version-check --upgrade -r tests/requirements-latest.txt
# node-postgres for tests/e2e/external/node_pg.rs, pinned by tests/node/package-lock.json,
# and its newest release, upgraded on every run, in `$TIMEFUSION_NODE_LATEST` (default
# `tests/node-latest`), for the test's `…_newest_release` twin.
(cd tests/node && npm ci --no-audit --no-fund --silent)
NODE_LATEST="${TIMEFUSION_NODE_LATEST:-$PWD/tests/node-latest}"
mkdir -p "$NODE_LATEST"
(cd "$NODE_LATEST" && npm install --no-audit --no-fund --silent --no-save --prefix . pg@latest)
