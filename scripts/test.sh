#!/usr/bin/env bash
# The whole test suite from a fresh clone: install, format/lint/type checks, then pytest on
# SQLite and PostgreSQL (127.0.0.1:5432 or $TEST_POSTGRES_URL). Extra arguments go to pytest.
# Exit status is non-zero on any failure, including "no tests collected".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/bootstrap.sh
./scripts/ensure-postgres.sh

echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== ruff check";          .venv/bin/ruff check .
echo "== mypy --strict";       .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
