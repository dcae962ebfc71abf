"""Fan-out latency of a revocation to a second process: median and worst over N logouts.

Usage: .venv/bin/python bench/fanout.py [--count 100]

Two `webhook serve` processes share a PostgreSQL schema of their own (TEST_POSTGRES_URL, default the
machine's `test` database; dropped after). For each of N sessions: replica B verifies the session's
token (so it sits in B's verified-token cache), the fake Keycloak POSTs a back-channel logout for the
sid to replica A, and B is asked again and again (one request at a time) until it answers 401
`session_revoked`. The lag is from just before the logout POST to B's first 401: A's verification,
its insert and commit, PostgreSQL's NOTIFY, B applying it, and one hook request. Also printed: B's
`webhook_revocation_fanout_lag_seconds` (stored -> held, as B measures it).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from webhook.db.engine import make_engine, migrate
from webhook.revocation.endpoint import PATH
from webhook.testing.keycloak import FakeKeycloak
from webhook.testing.serveproc import serve_replicas

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BOUND_SECONDS = 5.0


async def _ddl(url: str, statement: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _migrate(url: str, schema: str) -> None:
    engine = make_engine(url, schema=schema)
    try:
        await migrate(engine, schema=schema)
    finally:
        await engine.dispose()


def measure(count: int, url: str) -> None:
    schema = f"fanout_{uuid.uuid4().hex[:10]}"
    asyncio.run(_ddl(url, f'CREATE SCHEMA "{schema}"'))
    try:
        asyncio.run(_migrate(url, schema))
        keycloak = FakeKeycloak()
        realm = f"tenant-{uuid.uuid4()}"
        keycloak.add_realm(realm)
        with keycloak.serve_in_thread(), tempfile.TemporaryDirectory(prefix="fanout-") as workdir:
            env = {
                "KEYCLOAK_URL": keycloak.url,
                "PREFETCH_REALMS": realm,
                "DATABASE_URL": url,
                "DATABASE_SCHEMA": schema,
                "DATABASE_AUTO_MIGRATE": "false",
                "REVOCATIONS": "true",
                "LOG_LEVEL": "warning",
            }
            with serve_replicas(2, env, Path(workdir)) as (first, second), httpx.Client(timeout=10) as client:
                lags, taken = [], []
                for _ in range(count):
                    sid, sub = str(uuid.uuid4()), str(uuid.uuid4())
                    token = keycloak.mint(realm, sub=sub, claims={"sid": sid})
                    headers = {"Authorization": f"Bearer {token}"}
                    assert client.get(f"{second.url}/hasura/auth", headers=headers).status_code == 200
                    logout = keycloak.logout_token(realm, sub=sub, sid=sid)
                    started = time.perf_counter()
                    answer = client.post(f"{first.url}{PATH}", data={"logout_token": logout})
                    taken.append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                    while client.get(f"{second.url}/hasura/auth", headers=headers).status_code != 401:
                        assert time.perf_counter() - started < BOUND_SECONDS, "replica B never revoked"
                    lags.append(time.perf_counter() - started)
                metrics = client.get(f"{second.url}/metrics").text
        lags.sort()
        ms = [1000 * lag for lag in lags]
        print(f"fan-out to a second process over {count} revocations (logout POST to A -> B answers 401):")
        print(
            f"  median {statistics.median(ms):.1f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms, "
            f"worst {ms[-1]:.1f} ms; A answered the logout in median {1000 * statistics.median(taken):.1f} ms"
        )
        total = next(
            line for line in metrics.splitlines() if line.startswith("webhook_revocation_fanout_lag_seconds_sum")
        )
        number = next(
            line for line in metrics.splitlines() if line.startswith("webhook_revocation_fanout_lag_seconds_count")
        )
        mean = 1000 * float(total.split()[1]) / max(1.0, float(number.split()[1]))
        print(f"  B's own webhook_revocation_fanout_lag_seconds: {number.split()[1]} observations, mean {mean:.1f} ms")
    finally:
        asyncio.run(_ddl(url, f'DROP SCHEMA "{schema}" CASCADE'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--database", default=DEFAULT_URL)
    args = parser.parse_args()
    measure(args.count, args.database)


if __name__ == "__main__":
    main()
