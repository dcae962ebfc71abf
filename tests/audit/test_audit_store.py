"""The audit table: folding upserts, fold keys, tenant derivation, queries and pruning, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.support import engine_for
from webhook.audit import RejectionRecord, token_digest
from webhook.auditstore import (
    TABLE,
    Filters,
    fold_into,
    fold_key,
    list_rows,
    prune,
    row_of,
    top,
    upsert,
)
from webhook.db import make_sessionmaker, migrate
from webhook.reasons import Reason
from webhook.token import TokenFacts

pytestmark = pytest.mark.anyio
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()
TENANT = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def record(
    at: float,
    *,
    token: str | None = "tok-a",  # noqa: S107 - a test token, not a secret
    reason: Reason = Reason.UNKNOWN_ISSUER,
    ip: str | None = "203.0.113.7",
    ua: str | None = "curl/8",
    realm: str | None = None,
    sub: str | None = "alice",
    request_id: str = "req",
) -> RejectionRecord:
    return RejectionRecord(
        at=at,
        reason=reason,
        detail=f"detail {request_id}",
        source="hook",
        hook_mode="GET",
        token_sha256=token_digest(token),
        realm=realm,
        facts=TokenFacts(alg="RS256", kid="k1", iss="https://x.example/realms/r", sub=sub, azp="portal", jti="j"),
        client_ip=ip,
        user_agent=ua,
        request_id=request_id,
    )


@pytest.fixture
async def engine(db_env: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = engine_for(db_env)
    await migrate(engine, schema=db_env["DATABASE_SCHEMA"] or None)
    try:
        yield engine
    finally:
        await engine.dispose()


async def write(engine: AsyncEngine, *records: RejectionRecord) -> None:
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for item in records:
        fold_into(rows, item)
    async with engine.begin() as connection:
        await upsert(connection, rows.values())


async def all_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with make_sessionmaker(engine)() as session:
        return [dict(r._mapping) for r in (await session.execute(select(TABLE).order_by(TABLE.c.id))).all()]


async def test_repeats_fold_into_one_row(engine: AsyncEngine) -> None:
    """Same token hash and reason, across batches: one row, occurrences summed, first/last seen span them."""
    await write(engine, record(T0 + 10, request_id="r2"), record(T0 + 5, request_id="r1"))
    await write(engine, record(T0 + 30, request_id="r4", ip="198.51.100.1"), record(T0, request_id="r0"))
    await write(engine, record(T0 + 20, request_id="r3"))
    (row,) = await all_rows(engine)
    assert row["occurrences"] == 5
    assert row["first_seen"] == dt.datetime.fromtimestamp(T0, dt.UTC)
    assert row["last_seen"] == dt.datetime.fromtimestamp(T0 + 30, dt.UTC)
    assert row["request_id"] == "r4"  # context columns follow the latest occurrence
    assert row["client_ip_untrusted"] == "198.51.100.1"
    assert row["token_sha256"] == token_digest("tok-a") == row["fold_key"]


async def test_reason_and_token_keep_rows_apart(engine: AsyncEngine) -> None:
    """A different reason or a different token is a different row."""
    await write(
        engine,
        record(T0),
        record(T0, reason=Reason.EXPIRED),
        record(T0, token="tok-b"),
        record(T0 + 1, token="tok-b"),
    )
    rows = await all_rows(engine)
    assert sorted((r["reason"], r["occurrences"]) for r in rows) == [
        ("expired", 1),
        ("unknown_issuer", 1),
        ("unknown_issuer", 2),
    ]


async def test_requests_without_token_fold_by_client(engine: AsyncEngine) -> None:
    """No token: rows fold by (reason, client ip, user agent); token_sha256 stays NULL."""
    missing = Reason.MISSING_TOKEN
    await write(
        engine,
        record(T0, token=None, reason=missing),
        record(T0 + 1, token=None, reason=missing),
        record(T0 + 2, token=None, reason=missing, ip="192.0.2.9"),
        record(T0 + 3, token=None, reason=missing, ua="other-agent"),
    )
    rows = await all_rows(engine)
    assert sorted(int(str(r["occurrences"])) for r in rows) == [1, 1, 2]
    assert all(r["token_sha256"] is None for r in rows)
    assert fold_key(record(T0, token=None, reason=missing)) != fold_key(record(T0, token=None, reason=missing, ip=None))


async def test_tenant_comes_from_the_realm_name_only(engine: AsyncEngine) -> None:
    """tenant_id is the tenant of a `tenant-<uuid>[-event-<uuid>]` realm; NULL for other realms or none."""
    event = f"tenant-{TENANT}-event-11111111-2222-4333-8444-555555555555"
    await write(
        engine,
        record(T0, token="a", realm=f"tenant-{TENANT}"),
        record(T0, token="b", realm=event),
        record(T0, token="c", realm="platform-admin"),
        record(T0, token="d"),
    )
    rows = {r["token_sha256"]: r["tenant_id"] for r in await all_rows(engine)}
    assert rows == {
        token_digest("a"): TENANT,
        token_digest("b"): TENANT,
        token_digest("c"): None,
        token_digest("d"): None,
    }


async def test_claims_and_forwarded_values_are_capped() -> None:
    """Claimed and forwarded strings are cut to their column sizes before they reach the database."""
    long = "x" * 5000
    item = RejectionRecord(
        at=T0,
        reason=Reason.MALFORMED_TOKEN,
        detail=long,
        source="hook",
        hook_mode="POST",
        token_sha256=token_digest(long),
        realm=None,
        facts=TokenFacts(iss=long, sub=long, kid=long, alg=long, azp=long, jti=long),
        client_ip=long,
        user_agent=long,
        request_id=long,
    )
    row = row_of(item)
    for column in TABLE.columns:
        size = getattr(column.type, "length", None)
        value = row.get(column.key)
        if size is not None and isinstance(value, str):
            assert len(value) <= size, column.key


async def test_list_top_and_prune(engine: AsyncEngine) -> None:
    """Filters narrow `list`; `top` sums occurrences per group; prune deletes only rows last seen before the cutoff."""
    await write(
        engine,
        record(T0, token="old", ip="192.0.2.1"),
        record(T0 + 86400, token="new", reason=Reason.EXPIRED, sub="bob", ip="192.0.2.2"),
        record(T0 + 86401, token="new", reason=Reason.EXPIRED, sub="bob", ip="192.0.2.2"),
        record(T0 + 86402, token="newer", realm=f"tenant-{TENANT}"),
    )
    since = dt.datetime.fromtimestamp(T0 + 3600, dt.UTC)
    async with make_sessionmaker(engine)() as session:
        assert [r.token_sha256 for r in await list_rows(session, Filters(), 10)] == [
            token_digest("newer"),
            token_digest("new"),
            token_digest("old"),
        ]
        assert [r.sub for r in await list_rows(session, Filters(since=since, reason="expired"), 10)] == ["bob"]
        assert [r.realm for r in await list_rows(session, Filters(realm=f"tenant-{TENANT}"), 10)] == [
            f"tenant-{TENANT}"
        ]
        assert len(await list_rows(session, Filters(ip="192.0.2.1"), 10)) == 1
        assert len(await list_rows(session, Filters(sub="bob"), 10)) == 1
        by_reason = await top(session, "reason", Filters(), 10)
        assert [(e.value, e.occurrences, e.rows) for e in by_reason] == [
            ("expired", 2, 1),
            ("unknown_issuer", 2, 2),
        ]  # ties by value
        by_ip = await top(session, "ip", Filters(since=since), 1)
        assert [(e.value, e.occurrences) for e in by_ip] == [("192.0.2.2", 2)]
        assert by_ip[0].last_seen == dt.datetime.fromtimestamp(T0 + 86401, dt.UTC)
    assert await prune(engine, since) == 1
    assert len(await all_rows(engine)) == 2
