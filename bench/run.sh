#!/usr/bin/env bash
# Benchmark the auth hook against a bare Starlette endpoint, in the same run, with wrk.
#
#   bench/run.sh                      # all scenarios: warm cold mixed bad bad_pg unknown_kid post warm_rev cold_rev
#   bench/run.sh warm warm_rev cold cold_rev   # the revocation check's cost, side by side in one run
#   bench/run.sh warm bad             # some scenarios
#   bench/run.sh --workers-compare    # warm with --workers 1 vs 2 (servers then on both cores)
#   bench/run.sh --side-by-side warm cold   # bare and ours loaded at the same time on the same core: their
#                                     # cost ratio (requests per CPU-second), immune to the machine's drift
#   ROUNDS=1 DURATION=3s bench/run.sh warm bad     # a quick look
#
# Env knobs: ROUNDS (3) DURATION (10s) CONNS (64) SERVICE_CPU (1) WRK_CPU (0) WORKERS (1)
#   WARMUP (3s: warm-up pass before warm/mixed/post) PAUSE (2: idle seconds before each measured run)
#   THREADS (1: wrk threads) MULTI_CPUS (0,1: servers' cores when workers > 1)
#   SVC_PORT (18080) BARE_PORT (18081) KC_PORT (18090)
#   SERVICE_ENV ("" : extra VAR=value words for the service, e.g. "JWKS_MIN_REFETCH_SECONDS=5")
#   PRELOAD_REVOCATIONS (0; N: the service runs with REVOCATIONS=true and N active revocations of the
#      bench realm pre-loaded by bench/revocations.py, none covering a bench token)
#   REVOKED (10000: the active revocations the warm_rev/cold_rev scenarios run with: the same requests as
#      warm/cold, our service with REVOCATIONS=true and that many revocations pre-loaded, none covering a
#      bench token; the other scenarios of the same run keep revocations off)
#   KEEP_LOGS (0: service logs over 2 MB are cut to their first and last 100 lines after each run)
#   WAIT_QUIET (60: before each measured run wait up to this many seconds until the servers' and wrk's
#      cores are < QUIET_PCT (15) % busy over 1 s with our server idle, i.e. other processes leave them
#      alone; 0: do not wait. The busy % seen is recorded and flagged in the table)
#   REDO (2: a round's bare/ours pair is run again, up to REDO times, when either server got less than
#      DISTURBED_CPU (85) % of its core, i.e. other processes took it; the discarded rows go to
#      raw-discarded.tsv; single-worker runs only)
#   AUDIT_ROWS (1000000: before the bad scenarios, the audit table is pre-filled up to this many rows with
#      bench/prefill.py; rows already there count, and each run's rejections add more, so the table grows
#      over the rounds) AUDIT_RESET (0; 1: start from an empty audit table, then pre-fill)
#   PG_URL (postgresql+asyncpg://postgres@127.0.0.1:5432/test) PG_SCHEMA (bench_audit): the bad_pg
#      scenario's audit database (loopback only; the schema is the bench's own)
#   PROFILE (0; 1: record our service with py-spy during each measured run, pinned to WRK_CPU, into
#      profile-*.txt + a top-functions summary; needs py-spy on PATH or PYSPY=/path/to/py-spy;
#      sampling perturbs the numbers: profiled runs are for reading, not for the table)
#   PROFILE_NATIVE (0; 1: py-spy --native, so time in C extensions (OpenSSL, orjson, uvloop) shows by function)
#
# Per round and scenario it starts bare and then our service (order alternates between rounds) fresh,
# pinned to SERVICE_CPU, checks each answers correctly, warms up where the scenario says so, runs
# `wrk -t1 -c$CONNS -d$DURATION --latency` pinned to WRK_CPU, records req/s, p50, p99, non-2xx,
# errors, RSS and CPU of the server, JWKS fetches seen by the fake Keycloak and the token-cache hit
# ratio from /metrics, and stops the server. Only processes started here are stopped (trap EXIT).
# Output: bench/results/<stamp>/{raw.tsv,table.md,wrk-*.txt,*.log}; the table is also printed.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
cd "$ROOT"
PY=$ROOT/.venv/bin/python
DATA=$BENCH/.data

ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s} CONNS=${CONNS:-64}
SERVICE_CPU=${SERVICE_CPU:-1} WRK_CPU=${WRK_CPU:-0} WORKERS=${WORKERS:-1}
WARMUP=${WARMUP:-3s} PAUSE=${PAUSE:-2} MULTI_CPUS=${MULTI_CPUS:-0,1}
SVC_PORT=${SVC_PORT:-18080} BARE_PORT=${BARE_PORT:-18081} KC_PORT=${KC_PORT:-18090}
SERVICE_ENV=${SERVICE_ENV:-} KEEP_LOGS=${KEEP_LOGS:-0} PROFILE=${PROFILE:-0} PROFILE_NATIVE=${PROFILE_NATIVE:-0}
WAIT_QUIET=${WAIT_QUIET:-60} QUIET_PCT=${QUIET_PCT:-15} REDO=${REDO:-2} DISTURBED_CPU=${DISTURBED_CPU:-85}
export THREADS=${THREADS:-1}
AUDIT_ROWS=${AUDIT_ROWS:-1000000} AUDIT_RESET=${AUDIT_RESET:-0}
PG_URL=${PG_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test} PG_SCHEMA=${PG_SCHEMA:-bench_audit}
ALL_SCENARIOS=(warm cold mixed bad bad_pg unknown_kid post warm_rev cold_rev)

die() { echo "run.sh: $*" >&2; exit 1; }

# ------------------------------------------------------------------------------------------ arguments
COMPARE=0 SIDE=0
SCENARIOS=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$BENCH/run.sh" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --workers-compare) COMPARE=1 ;;
    --side-by-side) SIDE=1 ;;
    unknown-kid) SCENARIOS+=(unknown_kid) ;;
    warm|cold|mixed|bad|bad_pg|unknown_kid|post|warm_rev|cold_rev) SCENARIOS+=("$arg") ;;
    *) die "unknown argument '$arg' (scenarios: ${ALL_SCENARIOS[*]}; options: --workers-compare, --side-by-side)" ;;
  esac
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
[ "$SIDE" = 1 ] && [ "$COMPARE" = 1 ] && die "--side-by-side and --workers-compare do not combine"
# a config is scenario:workers
CONFIGS=()
if [ "$COMPARE" = 1 ]; then
  CONFIGS=(warm:1 warm:2)
else
  for s in "${SCENARIOS[@]}"; do CONFIGS+=("$s:$WORKERS"); done
fi
[[ $DURATION =~ ^([0-9]+)(s|m)?$ ]] || die "DURATION must look like 10s, 3s or 1m, got '$DURATION'"
DURATION_S=$(( BASH_REMATCH[1] * $([ "${BASH_REMATCH[2]}" = m ] && echo 60 || echo 1) ))
REVOKED=${REVOKED:-10000}
for v in REVOKED ROUNDS CONNS WORKERS PAUSE WAIT_QUIET QUIET_PCT REDO DISTURBED_CPU SVC_PORT BARE_PORT KC_PORT THREADS AUDIT_ROWS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done

# ------------------------------------------------------------------------------------------ tools
[ -x "$PY" ] || die "no venv at $ROOT/.venv (create it first: ./scripts/test.sh or pip install -e .)"
for tool in curl taskset; do command -v "$tool" >/dev/null || die "$tool is required"; done
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "run.sh: installing wrk (Debian package)"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; } \
      || die "apt-get could not install wrk"
  else
    die "wrk is not installed and I cannot install it (need root + apt-get): apt-get install wrk"
  fi
fi
PYSPY=${PYSPY:-$(command -v py-spy || true)}
if [ "$PROFILE" = 1 ]; then
  [ -n "$PYSPY" ] && [ -x "$PYSPY" ] || die "PROFILE=1 needs py-spy (pip install py-spy, or PYSPY=/path/to/py-spy)"
fi
NCPU=$(nproc)
for c in $SERVICE_CPU $WRK_CPU; do [ "$c" -lt "$NCPU" ] || die "cpu $c does not exist (nproc=$NCPU)"; done

# ------------------------------------------------------------------------------------------ data
"$PY" "$BENCH/prepare.py" || die "prepare.py failed"
meta() { "$PY" -c "import json,sys;print(json.load(open('$DATA/meta.json'))[sys.argv[1]])" "$1"; }
REALM=$(meta realm); TENANT=$(meta tenant_id); ISSUER_BASE=$(meta issuer_base)
WARM_FILE=$DATA/warm.txt COLD_FILE=$DATA/cold.txt BAD_FILE=$DATA/bad.txt UNKNOWN_FILE=$DATA/unknown_kid.txt
# the pre-run check's bad token is the file's last line: the bad scenarios stream from the first one, and
# a token the check made the service reject (and cache) must not come back in the measured run
WARM_TOKEN=$(head -1 "$WARM_FILE"); BAD_TOKEN=$(tail -1 "$BAD_FILE")

STAMP=$(date +%Y%m%d-%H%M%S)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
OUT=$BENCH/results/$STAMP
mkdir -p "$OUT"
RAW=$OUT/raw.tsv
printf 'round\tscenario\ttarget\tworkers\trps\tp50_ms\tp90_ms\tp99_ms\tmax_ms\trequests\tnon2xx\terrors\twraps\tstreamed\trss_kb\tcpu_pct\tjwks_fetches\tcache_hits\tcache_misses\tlog_lines\treasons\tother_busy_pct\tcode\tattempt\tworker_cpu\taudit_rows\n' > "$RAW"
head -1 "$RAW" > "$OUT/raw-discarded.tsv"

# ------------------------------------------------------------------------------------------ processes
KC_PID= SRV_PID= SRV_KIDS= LAST_CPU=0
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
loopback() { case "$1" in http://127.0.0.1:*) ;; *) die "refusing non-loopback target $1" ;; esac; }
descendants() { local p c; for p in "$@"; do for c in $(pgrep -P "$p" 2>/dev/null); do echo "$c"; descendants "$c"; done; done; }

stop_server() {
  [ -n "$SRV_PID" ] || return 0
  local kids; kids="$SRV_KIDS $(descendants "$SRV_PID")"
  kill -TERM "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SRV_PID" 2>/dev/null && { echo "run.sh: server $SRV_PID did not stop on TERM; KILL" >&2; kill -KILL "$SRV_PID" 2>/dev/null || true; }
  wait "$SRV_PID" 2>/dev/null || true
  for k in $kids; do  # leftover worker processes: only if the PID still runs our venv's python
    { tr '\0' ' ' < "/proc/$k/cmdline"; } 2>/dev/null | grep -q "$ROOT/.venv" && kill -KILL "$k" 2>/dev/null || true
  done
  SRV_PID= SRV_KIDS=
}
cleanup() {
  stop_server
  if [ -n "$KC_PID" ]; then kill -TERM "$KC_PID" 2>/dev/null || true; wait "$KC_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in $SVC_PORT $BARE_PORT $KC_PORT; do
  port_busy "$p" && die "127.0.0.1:$p is already in use by another process: free it or set SVC_PORT/BARE_PORT/KC_PORT"
done

taskset -c "$WRK_CPU" "$PY" "$BENCH/keycloak.py" --port "$KC_PORT" > "$OUT/keycloak.log" 2>&1 & KC_PID=$!
KC=http://127.0.0.1:$KC_PORT
for _ in $(seq 200); do curl -sf -o /dev/null -m 1 "$KC/__stats" && break; kill -0 "$KC_PID" 2>/dev/null || break; sleep 0.1; done
curl -sf -o /dev/null -m 1 "$KC/__stats" || { cat "$OUT/keycloak.log" >&2; die "the fake Keycloak did not start"; }
curl -sf -o /dev/null "$KC/realms/$REALM/protocol/openid-connect/certs" || die "the fake Keycloak does not serve $REALM"
jwks_fetches() { curl -sf -m 2 "$KC/__stats/jwks_fetches/$REALM" || echo 0; }

AUDIT_DB=$DATA/audit.sqlite3          # the bad scenario's: pre-filled, kept between runs (AUDIT_RESET=1 empties it)
OTHER_DB=$DATA/audit-run.sqlite3      # the other scenarios' audit database, new for each run.sh
REV_DB=$DATA/revoked-run.sqlite3      # warm_rev/cold_rev: audit + REVOKED revocations, new for each run.sh
SQLITE_URL=sqlite+aiosqlite:///$AUDIT_DB
wants() { local s; for s in "${SCENARIOS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
audit_url() { case "$1" in bad_pg) echo "$PG_URL" ;; bad) echo "$SQLITE_URL" ;; *_rev) echo "sqlite+aiosqlite:///$REV_DB" ;; *) echo "sqlite+aiosqlite:///$OTHER_DB" ;; esac; }
audit_rows() { # audit_rows SCENARIO -> rows in that scenario's audit table now
  if [ "$1" = bad_pg ]; then "$PY" "$BENCH/prefill.py" "$PG_URL" --schema "$PG_SCHEMA" --count 2>/dev/null || echo -
  else "$PY" "$BENCH/prefill.py" "$SQLITE_URL" --count 2>/dev/null || echo -; fi
}
rm -f "$OTHER_DB" "$OTHER_DB-journal" "$OTHER_DB-wal" "$OTHER_DB-shm" "$REV_DB" "$REV_DB-journal" "$REV_DB-wal" "$REV_DB-shm"
if [ "$AUDIT_RESET" = 1 ]; then rm -f "$AUDIT_DB" "$AUDIT_DB-journal" "$AUDIT_DB-wal" "$AUDIT_DB-shm"; fi
if wants bad && [ "$AUDIT_ROWS" -gt 0 ]; then
  echo "run.sh: pre-filling the SQLite audit table to $AUDIT_ROWS rows"
  "$PY" "$BENCH/prefill.py" "$SQLITE_URL" --rows "$AUDIT_ROWS" --realm "$REALM" || die "prefill of $AUDIT_DB failed"
fi
if wants bad_pg; then
  case "$PG_URL" in postgresql+asyncpg://*@127.0.0.1:*|postgresql+asyncpg://*@localhost:*) ;; *) die "PG_URL must be on loopback" ;; esac
  [[ $PG_SCHEMA =~ ^bench_[a-z0-9_]+$ ]] || die "PG_SCHEMA must look like bench_<name> (the bench drops it with AUDIT_RESET=1)"
  if [ "$AUDIT_RESET" = 1 ]; then
    "$PY" - "$PG_URL" "$PG_SCHEMA" <<'PYEOF' || die "could not drop schema $PG_SCHEMA"
import asyncio, sys
from sqlalchemy import text
from webhook.db.engine import make_engine
async def main() -> None:
    engine = make_engine(sys.argv[1])
    async with engine.begin() as c:
        await c.execute(text(f'DROP SCHEMA IF EXISTS "{sys.argv[2]}" CASCADE'))
    await engine.dispose()
asyncio.run(main())
PYEOF
  fi
  if [ "$AUDIT_ROWS" -gt 0 ]; then
    echo "run.sh: pre-filling the PostgreSQL audit table ($PG_SCHEMA) to $AUDIT_ROWS rows"
    "$PY" "$BENCH/prefill.py" "$PG_URL" --schema "$PG_SCHEMA" --rows "$AUDIT_ROWS" --realm "$REALM" \
      || die "prefill of PostgreSQL ($PG_URL, schema $PG_SCHEMA) failed: is it running?"
  fi
fi
PRELOAD_REVOCATIONS=${PRELOAD_REVOCATIONS:-0}
[[ $PRELOAD_REVOCATIONS =~ ^[0-9]+$ ]] || die "PRELOAD_REVOCATIONS must be a number, got '$PRELOAD_REVOCATIONS'"
if [ "$PRELOAD_REVOCATIONS" -gt 0 ]; then
  "$PY" "$BENCH/revocations.py" --database "sqlite+aiosqlite:///$OTHER_DB" --realm "$REALM" \
    --count "$PRELOAD_REVOCATIONS" || die "revocations.py failed"
  SERVICE_ENV="REVOCATIONS=true $SERVICE_ENV"
fi
if wants warm_rev || wants cold_rev; then
  [ "$REVOKED" -gt 0 ] || die "REVOKED must be > 0 for warm_rev/cold_rev"
  "$PY" "$BENCH/revocations.py" --database "sqlite+aiosqlite:///$REV_DB" --realm "$REALM" \
    --count "$REVOKED" || die "revocations.py failed"
fi

code_version() { # fingerprint of the service's source at this moment (others may be editing it)
  find "$ROOT/webhook" -name '*.py' -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-10
}

cpus_for() { if [ "$1" -gt 1 ]; then echo "$MULTI_CPUS"; else echo "$SERVICE_CPU"; fi; }

start_server() { # start_server TARGET WORKERS LOG SCENARIO -> SRV_PID, URL
  local target=$1 workers=$2 log=$3 scen=$4 cpus db_env; cpus=$(cpus_for "$workers")
  db_env="DATABASE_URL=$(audit_url "$scen")"
  [ "$scen" = bad_pg ] && db_env="$db_env DATABASE_SCHEMA=$PG_SCHEMA DATABASE_AUTO_MIGRATE=false"
  case "$scen" in *_rev) db_env="$db_env REVOCATIONS=true" ;; esac
  if [ "$target" = bare ]; then
    URL=http://127.0.0.1:$BARE_PORT/hasura/auth
    taskset -c "$cpus" "$ROOT/.venv/bin/uvicorn" bare:app --app-dir "$BENCH" --http httptools --loop uvloop \
      --workers "$workers" --no-access-log --no-server-header --no-proxy-headers --log-level warning \
      --host 127.0.0.1 --port "$BARE_PORT" > "$log" 2>&1 & SRV_PID=$!
  else
    URL=http://127.0.0.1:$SVC_PORT/hasura/auth
    # shellcheck disable=SC2086
    env -i PATH="$PATH" HOME="${HOME:-/root}" LANG="${LANG:-C.UTF-8}" \
      KEYCLOAK_URL="$KC" KEYCLOAK_ISSUER_URL="$ISSUER_BASE" PREFETCH_REALMS="$REALM" \
      LOG_LEVEL=info LOG_FORMAT=json $db_env $SERVICE_ENV \
      taskset -c "$cpus" "$ROOT/.venv/bin/webhook" serve --host 127.0.0.1 --port "$SVC_PORT" --workers "$workers" \
      > "$log" 2>&1 & SRV_PID=$!
  fi
  loopback "$URL"
  local base=${URL%/hasura/auth} ready_url code=
  if [ "$target" = bare ]; then ready_url=$URL; else ready_url=$base/readyz; fi
  for _ in $(seq 300); do
    kill -0 "$SRV_PID" 2>/dev/null || break
    code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$ready_url" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
  done
  if [ "$code" != 200 ]; then
    echo "---- $log (last 30 lines)" >&2; tail -30 "$log" >&2
    [ "$target" = ours ] && curl -s -m 2 "$base/readyz" >&2 && echo >&2
    stop_server
    return 1
  fi
  SRV_KIDS=$(descendants "$SRV_PID" | tr '\n' ' ')
}

expect() { # expect LABEL WANT_CODE WANT_IN_BODY curl-args...
  local label=$1 want=$2 needle=$3 out code body; shift 3
  out=$(curl -s -m 5 -w '\n%{http_code}' "$@" "$URL") || true
  code=${out##*$'\n'} body=${out%$'\n'*}
  if [ "$code" != "$want" ] || [[ $body != *"$needle"* ]]; then
    echo "run.sh: check failed: $label -> $code (want $want, body containing '$needle'): ${body:0:300}" >&2
    return 1
  fi
}

check_server() { # check_server TARGET SCENARIO
  if [ "$1" = bare ]; then
    expect "bare GET" 200 X-Hasura-Role -H "Authorization: Bearer $WARM_TOKEN"
    [ "$2" != post ] || expect "bare POST" 200 X-Hasura-Role -H 'Content-Type: application/json' -d '{"headers":{}}'
  else
    expect "ours GET warm token" 200 "$TENANT" -H "Authorization: Bearer $WARM_TOKEN"
    expect "ours GET bad signature" 401 bad_signature -H "Authorization: Bearer $BAD_TOKEN"
    [ "$2" != post ] || expect "ours POST warm token" 200 "$TENANT" -H 'Content-Type: application/json' \
      -d "{\"headers\":{\"Authorization\":\"Bearer $WARM_TOKEN\"},\"request\":{\"query\":\"query { __typename }\"}}"
  fi
}

wrk_args() { # wrk_args SCENARIO -> the script arguments
  case "$1" in
    warm|warm_rev) echo "loop $WARM_FILE" ;;
    cold|cold_rev) echo "stream $COLD_FILE" ;;
    mixed) echo "mixed $WARM_FILE $COLD_FILE" ;;
    bad|bad_pg) echo "stream $BAD_FILE" ;;
    unknown_kid) echo "loop $UNKNOWN_FILE" ;;
    post) echo "post $WARM_FILE" ;;
  esac
}
warmup_of() { # warmup_of SCENARIO -> the requests a server is warmed up with before it is measured (or nothing)
  case "$1" in warm|warm_rev|mixed) echo warm ;; post) echo post ;; esac
}
never_repeats() { # never_repeats SCENARIO: true for the scenarios that must never show our service a token twice
  case "$1" in cold|cold_rev|bad|bad_pg) return 0 ;; *) return 1 ;; esac
}
run_wrk() { # run_wrk DURATION SCENARIO
  loopback "$URL"
  # shellcheck disable=SC2046
  taskset -c "$WRK_CPU" wrk -t"$THREADS" -c"$CONNS" -d"$1" --timeout 5s --latency -s "$BENCH/tokens.lua" "$URL" \
    -- $(wrk_args "$2")
}

tree_rss_kb() { local t=0 p v; for p in $SRV_PID $(descendants "$SRV_PID"); do
  v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || true); t=$((t + ${v:-0})); done; echo "$t"; }
tree_cpu_ticks() { local t=0 p v; for p in $SRV_PID $(descendants "$SRV_PID"); do
  v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || true); t=$((t + ${v:-0})); done; echo "$t"; }
cache_counts() { # "hits misses" from /metrics (0 0 when the service exposes no token cache)
  curl -s -m 2 "${URL%/hasura/auth}/metrics" | awk '
    /^webhook_token_cache_lookups_total\{result="hit"\}/ {h=$2}
    /^webhook_token_cache_lookups_total\{result="miss"\}/ {m=$2}
    END {printf "%d %d\n", h, m}'
}

cores_busy_pct() { # cores_busy_pct "0,1" -> highest busy % of those cores over 1 s (everything running there)
  local list=$1 a b
  a=$(grep '^cpu[0-9]' /proc/stat); sleep 1; b=$(grep '^cpu[0-9]' /proc/stat)
  awk -v want=",$list," 'NR==FNR {t0[$1]=$2+$3+$4+$5+$6+$7+$8+$9; i0[$1]=$5+$6; next}
    { c=substr($1,4); if (index(want, "," c ",") == 0) next
      t=$2+$3+$4+$5+$6+$7+$8+$9-t0[$1]; i=$5+$6-i0[$1]; p=(t>0)?100*(t-i)/t:0; if (p>m) m=p }
    END {printf "%.0f\n", m}' <(echo "$a") <(echo "$b")
}
wait_quiet() { # wait_quiet CPULIST -> echoes the busy % finally seen
  local busy waited=0
  busy=$(cores_busy_pct "$1")
  while [ "$busy" -ge "$QUIET_PCT" ] && [ "$waited" -lt "$WAIT_QUIET" ]; do
    [ "$waited" = 0 ] && echo "run.sh: cores $1 are ${busy}% busy with other work: waiting up to ${WAIT_QUIET}s" >&2
    sleep 1; waited=$((waited + 2)); busy=$(cores_busy_pct "$1")
  done
  [ "$waited" -gt 0 ] && echo "run.sh: waited ${waited}s, cores now ${busy}% busy" >&2
  echo "$busy"
}

run_one() { # run_one ROUND SCENARIO WORKERS TARGET ATTEMPT: appends one row to $OUT/.row-TARGET
  local round=$1 scen=$2 workers=$3 target=$4 attempt=$5 tag log wout line f0 f1 c0 c1 t0 t1 rss reasons lines code=-
  tag=$target-$scen-w$workers-r$round$([ "$attempt" = 1 ] || echo "-a$attempt")
  [ "$target" = ours ] && code=$(code_version)
  log=$OUT/$tag.log
  local rows=-
  [ "$target" = ours ] && case "$scen" in bad|bad_pg) rows=$(audit_rows "$scen") ;; esac
  start_server "$target" "$workers" "$log" "$scen" || { sleep 1; echo "run.sh: retrying start of $target" >&2;
    start_server "$target" "$workers" "$log" "$scen" || die "$target did not become ready (log: $log)"; }
  check_server "$target" "$scen" || die "$target answered wrongly before measuring (log: $log)"
  local warmup; warmup=$(warmup_of "$scen")
  [ -z "$warmup" ] || run_wrk "$WARMUP" "$warmup" > "$OUT/warmup-$tag.txt"
  sleep "$PAUSE"
  local other=-
  [ "$WAIT_QUIET" -gt 0 ] && other=$(wait_quiet "$(cpus_for "$workers"),$WRK_CPU")
  f0=$(jwks_fetches); c0=(0 0); [ "$target" = ours ] && c0=($(cache_counts))
  t0=$(tree_cpu_ticks)
  local kids k wk=() wcpu=-; kids=$(descendants "$SRV_PID")  # uvicorn's worker processes when workers > 1
  for k in $kids; do wk+=("$(awk '{print $14 + $15}' "/proc/$k/stat" 2>/dev/null || echo 0)"); done
  wout=$OUT/wrk-$tag.txt
  local spy=
  if [ "$PROFILE" = 1 ] && [ "$target" = ours ]; then
    # shellcheck disable=SC2046
    taskset -c "$WRK_CPU" "$PYSPY" record -p "$SRV_PID" -d "$DURATION_S" -r 200 -f raw -o "$OUT/profile-$tag.txt" \
      $([ "$PROFILE_NATIVE" = 1 ] && echo --native) \
      > "$OUT/profile-$tag.log" 2>&1 & spy=$!
  fi
  run_wrk "$DURATION" "$scen" > "$wout" 2>&1 || { cat "$wout" >&2; die "wrk failed"; }
  if [ -n "$spy" ]; then
    wait "$spy" || true
    "$PY" "$BENCH/profile_top.py" "$OUT/profile-$tag.txt" > "$OUT/profile-$tag.top.txt" 2>&1 || true
  fi
  t1=$(tree_cpu_ticks); rss=$(tree_rss_kb)
  if [ "$workers" -gt 1 ] && [ -n "$kids" ]; then
    local j=0 v parts=()
    for k in $kids; do
      v=$(awk '{print $14 + $15}' "/proc/$k/stat" 2>/dev/null || echo 0)
      parts+=("$(awk -v a="${wk[$j]}" -v b="$v" -v hz="$(getconf CLK_TCK)" -v s="$DURATION_S" 'BEGIN{printf "%.0f", 100*(b-a)/hz/s}')")
      j=$((j + 1))
    done
    wcpu=$(IFS=/; echo "${parts[*]}")
  fi
  f1=$(jwks_fetches); c1=(0 0); [ "$target" = ours ] && c1=($(cache_counts))
  kill -0 "$SRV_PID" 2>/dev/null || die "$target died during the run (log: $log)"
  [ "$target" = ours ] && curl -s -m 2 "${URL%/hasura/auth}/metrics" > "$OUT/metrics-$tag.txt" || true
  stop_server
  line=$(grep '^RESULT' "$wout") || { cat "$wout" >&2; die "no RESULT line from wrk"; }
  local rps p50_ms p90_ms p99_ms max_ms requests non2xx errors wraps streamed kv
  for kv in ${line#RESULT }; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
  # cold and bad must never present a token twice to our service within a run (the server is fresh for
  # every run): the token file did not wrap, and the verified-token cache (both LRUs) saw no hit. Bare
  # answers every token alike, so a wrap there (it runs 3-5x faster) is harmless and only reported.
  if [ "$target" = ours ] && never_repeats "$scen"; then
    [ "$wraps" = 0 ] || die "$scen: the token file wrapped $wraps time(s) within a run (tokens repeated): prepare.py --cold/--bad N"
    [ "$((c1[0] - c0[0]))" = 0 ] || die "$scen: $((c1[0] - c0[0])) token-cache hits within a run: a token was repeated"
  fi
  lines=$(wc -l < "$log")
  reasons=-
  if [ "$target" = ours ]; then
    reasons=$(grep -o '"reason":"[a-z_]*"' "$log" | sort | uniq -c | sort -rn | head -4 |
      awk '{sub(/"reason":"/,"",$2); sub(/"/,"",$2); printf "%s%s:%s", (NR>1?",":""), $2, $1}')
    [ -n "$reasons" ] || reasons=-
    if [ "$KEEP_LOGS" != 1 ] && [ "$(stat -c %s "$log")" -gt 2000000 ]; then
      { head -100 "$log"; echo "... [run.sh: $lines lines, cut to first/last 100; KEEP_LOGS=1 keeps all]"; tail -100 "$log"; } > "$log.cut"
      mv "$log.cut" "$log"
    fi
  fi
  local ticks; ticks=$(getconf CLK_TCK)
  local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$ticks" -v s="$DURATION_S" 'BEGIN{printf "%.1f", 100*(b-a)/hz/s}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$scen" "$target" "$workers" "$rps" "$p50_ms" "$p90_ms" "$p99_ms" "$max_ms" "$requests" "$non2xx" \
    "$errors" "$wraps" "$streamed" "$rss" "$cpu" "$((f1 - f0))" "$((c1[0] - c0[0]))" "$((c1[1] - c0[1]))" \
    "$lines" "$reasons" "$other" "$code" "$attempt" "$wcpu" "$rows" > "$OUT/.row-$target"
  LAST_CPU=$cpu
  printf 'round %s/%s %-11s w%s %-4s %9.0f req/s  p50 %6.2f ms  p99 %7.2f ms  non2xx %-7s errors %-4s cpu %3s%%  rss %4d MB  jwks+%s%s\n' \
    "$round" "$ROUNDS" "$scen" "$workers" "$target" "$rps" "$p50_ms" "$p99_ms" "$non2xx" "$errors" "$cpu" \
    "$((rss / 1024))" "$((f1 - f0))" "$([ "$wraps" = 0 ] || echo "  WRAPPED $wraps")$([ "$wcpu" = - ] || echo "  workers cpu $wcpu%")"
}

echo "run.sh: $STAMP  rounds=$ROUNDS duration=$DURATION conns=$CONNS threads=$THREADS service_cpu=$SERVICE_CPU" \
  "wrk_cpu=$WRK_CPU workers=$WORKERS compare=$COMPARE configs=${CONFIGS[*]} revocations=$PRELOAD_REVOCATIONS"
echo "run.sh: realm $REALM, results in ${OUT#"$ROOT"/}"
run_side() { # run_side ROUND SCENARIO: bare and ours at once, both pinned to SERVICE_CPU, one wrk each
  local round=$1 scen=$2 tag b_pid o_pid b_url o_url b_t0 o_t0 b_t1 o_t1 line kv target code
  [ "$WORKERS" = 1 ] || die "--side-by-side runs one worker per server"
  tag=$scen-r$round
  start_server bare 1 "$OUT/side-bare-$tag.log" "$scen" || die "bare did not become ready"
  check_server bare "$scen" || die "bare answered wrongly"
  b_pid=$SRV_PID b_url=$URL
  start_server ours 1 "$OUT/side-ours-$tag.log" "$scen" || die "ours did not become ready"
  check_server ours "$scen" || die "ours answered wrongly"
  o_pid=$SRV_PID o_url=$URL code=$(code_version)
  local warmup; warmup=$(warmup_of "$scen")
  [ -z "$warmup" ] || for URL in "$b_url" "$o_url"; do run_wrk "$WARMUP" "$warmup" > /dev/null; done
  sleep "$PAUSE"
  [ "$WAIT_QUIET" -gt 0 ] && wait_quiet "$SERVICE_CPU,$WRK_CPU" > /dev/null
  SRV_PID=$b_pid; b_t0=$(tree_cpu_ticks); SRV_PID=$o_pid; o_t0=$(tree_cpu_ticks)
  URL=$b_url; run_wrk "$DURATION" "$scen" > "$OUT/wrk-side-bare-$tag.txt" 2>&1 & local b_wrk=$!
  URL=$o_url; run_wrk "$DURATION" "$scen" > "$OUT/wrk-side-ours-$tag.txt" 2>&1 & local o_wrk=$!
  wait "$b_wrk" || die "wrk (bare) failed"; wait "$o_wrk" || die "wrk (ours) failed"
  SRV_PID=$b_pid; b_t1=$(tree_cpu_ticks); SRV_PID=$o_pid; o_t1=$(tree_cpu_ticks)
  for target in bare ours; do
    if [ "$target" = bare ]; then SRV_PID=$b_pid; else SRV_PID=$o_pid; fi
    kill -0 "$SRV_PID" 2>/dev/null || die "$target died during the side-by-side run"
    stop_server
  done
  local rps_b rps_o req_b req_o non_b non_o
  for target in bare ours; do
    line=$(grep '^RESULT' "$OUT/wrk-side-$target-$tag.txt") || die "no RESULT line from wrk ($target)"
    local rps=0 requests=0 non2xx=0 wraps=0
    for kv in ${line#RESULT }; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    if [ "$target" = ours ] && never_repeats "$scen"; then
      [ "$wraps" = 0 ] || die "$scen: the token file wrapped within a run (tokens repeated)"
    fi
    if [ "$target" = bare ]; then rps_b=$rps req_b=$requests non_b=$non2xx; else rps_o=$rps req_o=$requests non_o=$non2xx; fi
  done
  local ticks; ticks=$(getconf CLK_TCK)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$scen" "$rps_b" "$req_b" "$((b_t1 - b_t0))" "$non_b" \
    "$rps_o" "$req_o" "$((o_t1 - o_t0))" "$non_o" "$code" >> "$OUT/side.tsv"
  awk -v r="$round" -v s="$scen" -v rb="$req_b" -v cb="$((b_t1 - b_t0))" -v ro="$req_o" -v co="$((o_t1 - o_t0))" -v hz="$ticks" \
    'BEGIN{printf "round %s %-11s side by side: bare %7.0f req per CPU-s, ours %7.0f: cost ratio %.1f%%\n", r, s, rb*hz/cb, ro*hz/co, 100*(ro/co)/(rb/cb)}'
}

if [ "$SIDE" = 1 ]; then
  printf 'round\tscenario\tbare_rps\tbare_requests\tbare_ticks\tbare_non2xx\tours_rps\tours_requests\tours_ticks\tours_non2xx\tcode\n' > "$OUT/side.tsv"
  echo "run.sh: $STAMP side by side: rounds=$ROUNDS duration=$DURATION conns=$CONNS per server, both servers on core $SERVICE_CPU, wrk on core $WRK_CPU"
  for round in $(seq "$ROUNDS"); do
    for cfg in "${CONFIGS[@]}"; do run_side "$round" "${cfg%%:*}"; done
  done
  "$PY" "$BENCH/summarize.py" --side "$OUT/side.tsv" --ticks "$(getconf CLK_TCK)" | tee "$OUT/table.md"
  echo "run.sh: rows in ${OUT#"$ROOT"/}/side.tsv"
  exit 0
fi

for round in $(seq "$ROUNDS"); do
  for cfg in "${CONFIGS[@]}"; do
    scen=${cfg%%:*} workers=${cfg##*:}
    if [ $((round % 2)) = 1 ]; then order="bare ours"; else order="ours bare"; fi
    for attempt in $(seq $((REDO + 1))); do
      disturbed=
      for target in $order; do
        run_one "$round" "$scen" "$workers" "$target" "$attempt"
        [ "${LAST_CPU%.*}" -ge "$DISTURBED_CPU" ] || disturbed="$disturbed $target ${LAST_CPU}%"
      done
      if [ -n "$disturbed" ] && [ "$workers" = 1 ] && [ "$attempt" -le "$REDO" ]; then
        echo "run.sh: round $round $scen disturbed (server cpu:$disturbed < ${DISTURBED_CPU}%): running the pair again"
        cat "$OUT/.row-bare" "$OUT/.row-ours" >> "$OUT/raw-discarded.tsv"
        continue
      fi
      cat "$OUT/.row-bare" "$OUT/.row-ours" >> "$RAW"
      break
    done
  done
done

rm -f "$OUT/.row-bare" "$OUT/.row-ours"
{
  echo "# bench $STAMP"
  echo
  echo "$(date -u +%Y-%m-%d) · $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') · nproc $NCPU ·" \
    "rounds $ROUNDS × $DURATION · wrk -t$THREADS -c$CONNS on core $WRK_CPU · servers on core" \
    "$SERVICE_CPU$([ "$COMPARE" = 1 ] && echo " (workers 2: cores $MULTI_CPUS, shared with wrk)") · load avg at start: $LOAD0, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  MIN_REFETCH=$(sed -n 's/.*JWKS_MIN_REFETCH_SECONDS=\([0-9.]*\).*/\1/p' <<< "$SERVICE_ENV")
  "$PY" "$BENCH/summarize.py" "$RAW" --duration "$DURATION_S" --min-refetch "${MIN_REFETCH:-10}" \
    $([ "$COMPARE" = 1 ] && echo --workers-compare)
} > "$OUT/table.md"
echo
cat "$OUT/table.md"
echo
echo "run.sh: raw rows in ${RAW#"$ROOT"/}, table in ${OUT#"$ROOT"/}/table.md"
