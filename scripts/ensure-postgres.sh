#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers; start the local cluster if it is down and we
# may. Fails loudly (never skips): the suite must run against PostgreSQL as well as SQLite.
set -euo pipefail
url=${TEST_POSTGRES_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}
hostport=${url#*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=5432

up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
if ! up && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  echo "ensure-postgres: starting PostgreSQL $version cluster 'main'"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 50); do up && break; sleep 0.2; done
fi
if ! up; then
  echo "ensure-postgres: PostgreSQL is not reachable at $host:$port (set TEST_POSTGRES_URL)" >&2
  exit 1
fi
echo "ensure-postgres: PostgreSQL answers at $host:$port"
