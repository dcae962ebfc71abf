#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers, on a fresh machine too: install it from Debian's
# packages when it is missing (as root), start the local cluster, trust 127.0.0.1 and create the
# `test` database. Fails loudly (never skips): the suite must run on PostgreSQL as well as SQLite.
# With TEST_POSTGRES_URL pointing elsewhere, it only checks that the server answers.
set -euo pipefail
url=${TEST_POSTGRES_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}
hostport=${url#*@}; hostport=${hostport%%/*}
host=${hostport%%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=5432
database=${url##*/}; database=${database%%\?*}

say() { echo "ensure-postgres: $*"; }
die() { echo "ensure-postgres: $*" >&2; exit 1; }
up() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
local_server() { [ "$host" = 127.0.0.1 ] || [ "$host" = localhost ]; }

if local_server && [ "$(id -u)" = 0 ]; then
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    say "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -1)
  [ -n "$version" ] || die "no PostgreSQL cluster configuration under /etc/postgresql"
  [ -d "/etc/postgresql/$version/main" ] || pg_createcluster "$version" main >/dev/null
  hba=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q '^# election-webhook tests' "$hba"; then
    # Local tests connect as postgres without a password; prepend so these lines win.
    { echo '# election-webhook tests: trust loopback'
      echo 'host all all 127.0.0.1/32 trust'
      echo 'host all all ::1/128 trust'
      cat "$hba"; } >"$hba.new" && mv "$hba.new" "$hba"
    chown postgres:postgres "$hba"
  fi
  if up; then
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
  else
    say "starting PostgreSQL $version cluster 'main' on port $port"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 100); do up && break; sleep 0.1; done
  up || die "the cluster did not start: see /var/log/postgresql/postgresql-$version-main.log"
  for _ in $(seq 50); do su postgres -c "psql -qAt -p $port -c 'select 1'" >/dev/null 2>&1 && break; sleep 0.1; done
  if ! su postgres -c "psql -qAt -p $port -c \"select 1 from pg_database where datname = '$database'\"" | grep -q 1; then
    say "creating database $database"
    su postgres -c "createdb -p $port '$database'"
  fi
fi
up || die "PostgreSQL is not reachable at $host:$port (set TEST_POSTGRES_URL)"
say "PostgreSQL answers at $host:$port"
