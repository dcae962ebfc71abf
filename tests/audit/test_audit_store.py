"""The audit table: folding upserts, fold keys, tenant derivation, queries and pruning, on both databases."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.support import engine_for
from webhook.audit.fold import FoldPolicy, fold_records
from webhook.audit.record import RejectionRecord, token_digest
from webhook.audit.store import TABLE, Filters, list_rows, prune, top, upsert
from webhook.core.reasons import Reason
from webhook.core.token import TokenFacts
from webhook.db.engine import make_sessionmaker, migrate

pytestmark = pytest.mark.anyio
T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC).timestamp()
TENANT = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def record(
    at: float,
    *,
    token: str | None = "tok-a",  # noqa: S107 - a test token, not a secret
    reason: Reason = Reason.EXPIRED,
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
    rows, _ = fold_records(records)
    async with engine.begin() as connection:
        await upsert(connection, rows)


async def all_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with make_sessionmaker(engine)() as session:
        return [dict(r._mapping) for r in (await session.execute(select(TABLE).order_by(TABLE.c.id))).all()]


async def test_repeats_fold_into_one_row(engine: AsyncEngine) -> None:
    """Same verified token and reason, across batches: one row, occurrences summed, first/last seen span them."""
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
    assert (row["fold"], row["distinct_tokens"]) == ("token", 1)


async def test_reason_and_token_keep_rows_apart(engine: AsyncEngine) -> None:
    """A different reason or a different verified token is a different row."""
    await write(
        engine,
        record(T0, reason=Reason.ROLE_NOT_ALLOWED),
        record(T0),
        record(T0, token="tok-b"),
        record(T0 + 1, token="tok-b"),
    )
    rows = await all_rows(engine)
    assert sorted((r["reason"], r["occurrences"]) for r in rows) == [
        ("expired", 1),
        ("expired", 2),
        ("role_not_allowed", 1),
    ]


async def test_unverifiable_rejections_fold_by_reason_realm_client_and_bucket(engine: AsyncEngine) -> None:
    """No valid signature: one row per (reason, realm, client IP, minute), counting occurrences and distinct tokens."""
    bad = Reason.BAD_SIGNATURE
    await write(
        engine,
        *(record(T0 + n, token=f"forged-{n}", reason=bad) for n in range(30)),  # 30 tokens, one client
        record(T0 + 1, token="forged-0", reason=bad),  # a repeat: one more occurrence, no new token
        record(T0 + 2, token="forged-x", reason=bad, ip="192.0.2.9"),  # another client
        record(T0 + 3, token="forged-y", reason=bad, realm=f"tenant-{TENANT}"),  # another realm
        record(T0 + 61, token="forged-z", reason=bad),  # the next bucket
        record(T0, token=None, reason=Reason.MISSING_TOKEN),
        record(T0 + 1, token=None, reason=Reason.MISSING_TOKEN, ua="other-agent"),  # same client: same row
    )
    rows = sorted(
        (
            r["reason"],
            r["client_ip_untrusted"],
            r["realm"] or "",
            r["first_seen"],
            r["occurrences"],
            r["distinct_tokens"],
        )
        for r in await all_rows(engine)
    )
    minute = dt.datetime.fromtimestamp(T0, dt.UTC)
    assert rows == [
        ("bad_signature", "192.0.2.9", "", minute + dt.timedelta(seconds=2), 1, 1),
        ("bad_signature", "203.0.113.7", "", minute, 31, 30),
        ("bad_signature", "203.0.113.7", "", minute + dt.timedelta(seconds=61), 1, 1),
        ("bad_signature", "203.0.113.7", f"tenant-{TENANT}", minute + dt.timedelta(seconds=3), 1, 1),
        ("missing_token", "203.0.113.7", "", minute, 2, 0),
    ]
    assert {r["fold"] for r in await all_rows(engine)} == {"bucket"}


async def test_rows_per_bucket_are_bounded_and_the_rest_is_counted_in_overflow(engine: AsyncEngine) -> None:
    """Past the row bound of a bucket, records fold into one overflow row per reason: counted, origin dropped."""
    policy = FoldPolicy(bucket_seconds=60, rows_per_bucket=10)
    records = [record(T0, token=f"t{n}", ip=f"198.51.100.{n}", reason=Reason.BAD_SIGNATURE) for n in range(25)]
    records += [record(T0 + 1, token=f"e{n}") for n in range(5)]  # verified, same bucket: over the bound too
    rows, overflowed = fold_records(records, policy)
    assert overflowed == 20
    async with engine.begin() as connection:
        await upsert(connection, rows)
    stored = await all_rows(engine)
    assert len(stored) == 10 + 2  # the bound, plus one overflow row per reason
    assert sum(int(str(r["occurrences"])) for r in stored) == 30
    overflow = {r["reason"]: r for r in stored if r["fold"] == "overflow"}
    assert {k: (v["occurrences"], v["distinct_tokens"]) for k, v in overflow.items()} == {
        "bad_signature": (15, 15),
        "expired": (5, 5),
    }
    assert all(v["client_ip_untrusted"] is None and v["sub"] is None for v in overflow.values())


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
    (row,), _ = fold_records([item])
    for column in TABLE.columns:
        size = getattr(column.type, "length", None)
        value = row.get(column.key)
        if size is not None and isinstance(value, str):
            assert len(value) <= size, column.key


async def test_list_top_and_prune(engine: AsyncEngine) -> None:
    """Filters narrow `list`; `top` sums occurrences per group; prune deletes only rows last seen before the cutoff."""
    await write(
        engine,
        record(T0, token="old", ip="192.0.2.1", reason=Reason.ROLE_NOT_ALLOWED),
        record(T0 + 86400, token="new", reason=Reason.EXPIRED, sub="bob", ip="192.0.2.2"),
        record(T0 + 86401, token="new", reason=Reason.EXPIRED, sub="bob", ip="192.0.2.2"),
        record(T0 + 86402, token="newer", realm=f"tenant-{TENANT}", reason=Reason.ROLE_NOT_ALLOWED),
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
            ("role_not_allowed", 2, 2),
        ]  # ties by value
        by_ip = await top(session, "ip", Filters(since=since), 1)
        assert [(e.value, e.occurrences) for e in by_ip] == [("192.0.2.2", 2)]
        assert by_ip[0].last_seen == dt.datetime.fromtimestamp(T0 + 86401, dt.UTC)
    assert await prune(engine, since) == 1
    assert len(await all_rows(engine)) == 2
