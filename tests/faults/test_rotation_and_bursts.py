"""Key rotation under 64 connections, the audit database down, and bursts of made-up realms.

- Rotation: tokens of the old and the new key arrive together as soon as the new key is published:
  all accepted after exactly one (single-flight) refetch; once the old key is removed and the
  JWKS refreshed, old-key tokens are refused and new-key tokens still accepted.
- Audit database down (a closed port, then a forwarder to the test PostgreSQL opens on it): the
  hook answers every request correctly, the writer spills every record to its journal, and once
  the database is back the journal is replayed: nothing lost (occurrences summed in PostgreSQL).
- 1,000 (default) or 10,000 (slow) distinct pattern-valid but nonexistent realms in a burst, with
  honest traffic mixed in: a bounded number of JWKS fetches (JWKS_NEW_REALM_FETCH_RATE), the real
  realms never evicted nor refused, the cache bounded by JWKS_MAX_REALMS.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.audit.support import forwarder
from tests.faults.support import Figures, Load, Req, Tokens, audit_totals, fault_stack, fetches, mix
from tests.security.support import bearer
from webhook.audit.store import TABLE
from webhook.db.engine import make_engine

pytestmark = pytest.mark.anyio
POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def sizes(default: int, long: int) -> list[object]:
    return [pytest.param(default, id="default"), pytest.param(long, id="long", marks=pytest.mark.slow)]


# ------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("total", sizes(640, 10_000))
async def test_key_rotation_under_load(tmp_path: Path, total: int) -> None:
    figures = Figures(f"key rotation, 64 connections ({total})")
    # a long TTL: the only fetches are the ones the rotation causes (and the awaited refresh)
    async with fault_stack(tmp_path, {"JWKS_TTL_SECONDS": "600"}) as stack:
        realm, tokens = stack.tenant, Tokens(stack)
        old = tokens.honest(realm)
        load = Load(stack, figures)
        await load.run(mix([old], tokens.forged(), total // 4))
        stack.clock.advance(stack.settings.jwks_min_refetch + 1)  # a refetch for an unknown kid is due
        new_kid = realm.rotate(keep_old=True)
        new = tokens.honest(realm, kid=new_kid)
        before = stack.keycloak.jwks_fetches[realm.name]
        await load.run(mix([old, new], tokens.forged(), total // 2))
        rotation_fetches = stack.keycloak.jwks_fetches[realm.name] - before
        assert rotation_fetches == 1  # single flight, whatever the concurrency

        old_kid = realm.signing_kids[0]
        realm.remove_key(old_kid)
        runtime = stack.app.runtime
        assert runtime is not None
        stack.clock.advance(stack.settings.jwks_ttl + 1)
        started = time.perf_counter()
        assert await runtime.cache.refresh_due() >= 1  # the scheduled refresh, awaited
        figures.recovery_s = time.perf_counter() - started
        refused = [
            Req(bearer(t), frozenset({"401:unknown_kid"}), "GET" if i % 2 else "POST") for i, t in enumerate(old)
        ]
        accepted = list(mix([new], [], total // 4))
        await load.run(
            [
                item
                for pair in zip(accepted, refused * (len(accepted) // len(refused) + 1), strict=False)
                for item in pair
            ]
        )
        load.finish()
        figures.fetches = fetches(stack)
        figures.audit_written, figures.audit_dropped = await audit_totals(stack)
        figures.notes = f"refetches for the new kid={rotation_fetches}"
        assert stack.attacker.hits == []
    figures.check()


# ------------------------------------------------------------------------------------- database down


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("total", sizes(1280, 10_000))
async def test_audit_database_down(tmp_path: Path, total: int) -> None:
    figures = Figures(f"audit database down ({total})")
    port, schema = closed_port(), f"fault_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(POSTGRES)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = POSTGRES.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    assert url != POSTGRES, "TEST_POSTGRES_URL must name 127.0.0.1:5432 for this test"
    env = {
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": schema,
        "DATABASE_AUTO_MIGRATE": "true",
        "AUDIT_QUEUE_SIZE": "500",
        "AUDIT_BATCH_SIZE": "100",
        "AUDIT_RETRY_MAX_SECONDS": "0.2",
        "AUDIT_JOURNAL_DIR": str(tmp_path / "journal"),
    }
    try:
        async with fault_stack(tmp_path, env) as stack:
            tokens = Tokens(stack, per_pool=max(16, total // 12))  # distinct forged tokens: distinct rows
            honest = [tokens.honest(stack.tenant, kid=None)[:16]]
            load = Load(stack, figures)
            await load.run(mix(honest, tokens.forged(), total))
            ready = (await stack.client.get(f"{stack.url}/readyz")).json()
            assert ready["ready"] is True and ready["audit"] == "degraded"
            sink = stack.sink
            rejected = sum(n for outcome, n in figures.outcomes.items() if outcome.startswith("401"))
            async with asyncio.timeout(30):
                await sink.settled()  # every record is in the journal
            assert sink.written == 0 and sink.journaled == rejected
            async with forwarder(port, ("127.0.0.1", 5432)):
                started = time.perf_counter()
                async with asyncio.timeout(60):
                    await sink.flushed()  # the journal is replayed once the database is back
                figures.recovery_s = time.perf_counter() - started
                load.finish()
                figures.fetches = fetches(stack)
                figures.audit_written, figures.audit_dropped = sink.written, sum(sink.dropped.values())
                assert (figures.audit_written, figures.audit_dropped) == (rejected, 0)
                engine = make_engine(url, schema=schema)
                try:
                    async with engine.connect() as connection:
                        total_rows = (await connection.execute(select(func.sum(TABLE.c.occurrences)))).scalar_one()
                finally:
                    await engine.dispose()
                assert total_rows == figures.audit_written
            figures.notes = f"rejections={rejected} journaled"
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
    figures.check()


# ------------------------------------------------------------------------------------- realm bursts


@pytest.mark.parametrize(
    ("realms", "rate"),
    [
        pytest.param(1_000, 5, id="1k"),
        pytest.param(10_000, 5, id="10k", marks=pytest.mark.slow),
        pytest.param(10_000, 100_000, id="10k-unlimited-as-before", marks=pytest.mark.slow),
    ],
)
async def test_burst_of_nonexistent_realms(tmp_path: Path, realms: int, rate: int) -> None:
    limited = rate < realms
    figures = Figures(
        f"{realms} made-up realms, new-realm rate {rate}/s" + ("" if limited else " (no limit, as before the fix)")
    )
    env = {"JWKS_NEW_REALM_FETCH_RATE": str(rate), "JWKS_MAX_REALMS": "200", "AUDIT_QUEUE_SIZE": "20000"}
    async with fault_stack(tmp_path, env) as stack:
        tokens = Tokens(stack)
        loaded = stack.fresh_realm()  # an unpinned real realm, loaded before the burst
        assert (await stack.hasura("GET").authenticate(bearer(tokens.honest(loaded)[0]))).outcome == "session"
        honest = [tokens.honest(stack.tenant), tokens.honest(loaded)]
        ghosts = [
            stack.keycloak.mint(stack.tenant.name, claims={"iss": f"{stack.keycloak.url}/realms/tenant-{uuid.uuid4()}"})
            for _ in range(realms)
        ]
        ghost = frozenset({"401:unknown_realm", "401:jwks_unavailable"})
        requests = []
        cycle = [t for pool in honest for t in pool]
        for i, token in enumerate(ghosts):
            requests.append(Req(bearer(token), ghost, "GET" if i % 2 else "POST"))
            if i % 8 == 0:
                requests.append(Req(bearer(cycle[(i // 8) % len(cycle)]), frozenset({"200"})))
        load = Load(stack, figures)
        if limited:
            # the service's clock stands still during the burst: the bucket cannot refill, so the bound
            # is `rate` fetches however long this run takes (a bound per wall-clock second would loosen
            # as the machine slows down)
            stack.clock.freeze()
        try:
            await load.run(requests)
        finally:
            stack.clock.thaw()
        real = set(stack.keycloak.realms)
        ghost_fetches = sum(n for name, n in stack.keycloak.jwks_fetches.items() if name not in real)
        runtime = stack.app.runtime
        assert runtime is not None
        assert len(runtime.cache) <= 200
        if limited:
            assert ghost_fetches <= rate  # the bucket holds at most `rate` tokens and never refilled
        # recovery: a real realm nobody used yet gets its keys as soon as the budget allows
        newcomer = stack.fresh_realm()
        token = tokens.honest(newcomer)[0]
        started = time.perf_counter()
        async with asyncio.timeout(10):
            for _ in range(5000):
                if (await stack.hasura("GET").authenticate(bearer(token))).outcome == "session":
                    break
        figures.recovery_s = time.perf_counter() - started
        load.finish()
        figures.fetches = ghost_fetches
        figures.audit_written, figures.audit_dropped = await audit_totals(stack)
        figures.notes = (
            f"cache={len(runtime.cache)}/200 rate_limited={int(stack.metrics.fetch['rate_limited']._value.get())}"
        )
    figures.check()
