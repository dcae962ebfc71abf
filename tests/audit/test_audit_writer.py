"""DbAuditSink: non-blocking submit, bounded queue with counted drops, batches, retries, shutdown, pruning."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.support import FakeClock, RecordingLog, engine_for, table_totals
from webhook.audit import RejectionRecord, token_digest
from webhook.auditwriter import CountingSink, DbAuditSink, WriterPolicy, audit_status
from webhook.db import make_engine, migrate
from webhook.metrics import Metrics, RealmLabels
from webhook.reasons import Reason
from webhook.token import TokenFacts

pytestmark = pytest.mark.anyio
DAY = 86400.0
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
TENANT_REALM = "tenant-0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"


def rejection(
    n: int, at: float = T0, *, realm: str | None = None, reason: Reason = Reason.BAD_SIGNATURE
) -> RejectionRecord:
    return RejectionRecord(
        at=at,
        reason=reason,
        detail="signature does not verify",
        source="hook",
        hook_mode="POST",
        token_sha256=token_digest(f"token-{n}"),
        realm=realm,
        facts=TokenFacts(alg="RS256", kid="k", iss="https://kc/realms/x", sub=f"s{n}"),
        client_ip="192.0.2.1",
        user_agent="hasura",
        request_id=f"r{n}",
    )


@pytest.fixture
async def engine(db_env: dict[str, str]) -> AsyncIterator[AsyncEngine]:
    engine = engine_for(db_env)
    try:
        yield engine
    finally:
        await engine.dispose()


def schema_of(db_env: dict[str, str]) -> str | None:
    return db_env["DATABASE_SCHEMA"] or None


class Sinks:
    """Builds sinks on this test's database with small sizes, a fake clock and a recording log."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.clock = FakeClock()
        self.log = RecordingLog()
        self.metrics = Metrics()

    def __call__(
        self,
        *,
        engine: AsyncEngine | None = None,
        prepare: Callable[[], Awaitable[None]] | None = None,
        wall_clock: Callable[[], float] = lambda: T0,
        **policy: Any,
    ) -> DbAuditSink:
        sizes: dict[str, Any] = {"queue_size": 100, "batch_size": 40, "flush_interval": 0.01, "retry_max": 0.05}
        return DbAuditSink(
            engine or self.engine,
            policy=WriterPolicy(**{**sizes, **policy}),
            metrics=self.metrics,
            log=self.log,
            clock=self.clock,
            wall_clock=wall_clock,
            prepare=prepare,
        )


@pytest.fixture
def sinks(engine: AsyncEngine) -> Sinks:
    return Sinks(engine)


async def migrated(engine: AsyncEngine, db_env: dict[str, str]) -> None:
    await migrate(engine, schema=schema_of(db_env))


def dropped(metrics: Metrics, cause: str) -> float:
    return float(metrics.registry.get_sample_value("webhook_audit_dropped_total", {"cause": cause}) or 0)


async def test_full_queue_drops_and_counts_without_blocking(sinks: Sinks, db_env: dict[str, str]) -> None:
    """Past the queue size, submit drops and counts; one warning per interval; what was queued is written."""
    await migrated(sinks.engine, db_env)
    sink = sinks(queue_size=100, warn_interval=60.0)
    for n in range(150):
        sink.submit(rejection(n))
    assert (sink.accepted, sink.dropped["queue_full"], sink.high_water) == (100, 50, 100)
    assert dropped(sinks.metrics, "queue_full") == 50
    assert sinks.log.events("warning") == ["audit.dropped"]
    assert audit_status(sink) == "degraded"
    sinks.clock.advance(61)
    sink.submit(rejection(999))
    assert sinks.log.events("warning") == ["audit.dropped", "audit.dropped"]
    first, second = (fields["dropped"] for level, _, fields in sinks.log.lines if level == "warning")
    assert (first, second) == (1, 50)  # the second line reports the 49 drops it stayed quiet about, plus its own
    while await sink.drain_once():
        pass
    assert sink.written == 100
    assert await table_totals(sinks.engine) == (100, 100)
    sinks.clock.advance(61)
    assert audit_status(sink) == "ok"


async def test_batches_hold_at_most_batch_size_distinct_rows(sinks: Sinks, db_env: dict[str, str]) -> None:
    """One drain writes one transaction of at most batch_size distinct rows; repeats fold inside the batch."""
    await migrated(sinks.engine, db_env)
    sink = sinks(batch_size=10, queue_size=100)
    for n in range(30):
        sink.submit(rejection(n % 5))  # 5 distinct, folded in memory
    for n in range(20):
        sink.submit(rejection(100 + n))
    assert await sink.drain_once() == 35  # 30 folded into 5 rows, then 5 more distinct rows
    assert await table_totals(sinks.engine) == (10, 35)
    assert await sink.drain_once() == 10
    assert await sink.drain_once() == 5
    assert await sink.drain_once() == 0
    assert await table_totals(sinks.engine) == (25, 50)


async def test_failed_batch_is_kept_and_retried(sinks: Sinks, db_env: dict[str, str]) -> None:
    """A failing write keeps its rows (status degraded) until a later attempt succeeds."""
    sink = sinks()  # no table yet: every write fails
    for n in range(3):
        sink.submit(rejection(n))
    with pytest.raises(Exception, match="rejected_token"):
        await sink.drain_once()
    assert sink.depth == 3
    assert float(sinks.metrics.audit_write_errors._value.get()) == 1
    await migrated(sinks.engine, db_env)
    assert await sink.drain_once() == 3
    assert await table_totals(sinks.engine) == (3, 3)


async def test_writer_task_migrates_writes_and_recovers(sinks: Sinks, db_env: dict[str, str]) -> None:
    """The background writer runs `prepare` first, then writes what is submitted; flushed() awaits it."""
    prepare = partial(migrate, sinks.engine, schema=schema_of(db_env))
    sink = sinks(prepare=prepare)
    assert audit_status(sink) == "degraded"  # schema not ready yet
    sink.start()
    for n in range(25):
        sink.submit(rejection(n % 7, at=T0 + n))
    async with asyncio.timeout(10):
        await sink.flushed()
    assert audit_status(sink) == "ok"
    assert await table_totals(sinks.engine) == (7, 25)
    await sink.close()
    assert sinks.log.events()[-1] == "audit.closed"


async def test_writer_retries_until_the_database_comes_back(sinks: Sinks, db_env: dict[str, str]) -> None:
    """While writes fail the writer backs off and retries; once the table exists everything queued lands."""
    sink = sinks()
    sink.submit(rejection(1))
    with pytest.raises(Exception, match="rejected_token"):
        await sink.drain_once()  # the first failure, made deterministic
    assert audit_status(sink) == "degraded"
    sink.start()
    sink.submit(rejection(2))
    await migrated(sinks.engine, db_env)
    async with asyncio.timeout(10):
        await sink.flushed()
    assert await table_totals(sinks.engine) == (2, 2)
    assert audit_status(sink) == "ok"
    assert sinks.log.events().count("audit.write_failed") == 1  # one line per outage
    assert "audit.write_recovered" in sinks.log.events()
    await sink.close()


async def test_close_flushes_the_queue(sinks: Sinks, db_env: dict[str, str]) -> None:
    """close() writes everything still queued before the deadline."""
    await migrated(sinks.engine, db_env)
    sink = sinks(queue_size=2000, batch_size=300, flush_interval=60.0, shutdown_deadline=10.0)
    sink.start()
    for n in range(1500):
        sink.submit(rejection(n))
    await sink.close()
    assert (sink.written, sink.dropped) == (1500, {"queue_full": 0, "shutdown": 0})
    assert await table_totals(sinks.engine) == (1500, 1500)
    sink.submit(rejection(0))  # after close: counted, never queued
    assert sink.dropped["shutdown"] == 1


async def test_close_counts_what_the_deadline_leaves(closed_port: int) -> None:
    """With the database unreachable, close() gives up at the deadline and counts every record as dropped."""
    down = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test")
    sinks = Sinks(down)
    sink = sinks(shutdown_deadline=0.2)
    sink.start()
    for n in range(30):
        sink.submit(rejection(n))
    await sink.close()
    await down.dispose()
    assert (sink.written, sink.dropped["shutdown"]) == (0, 30)
    assert dropped(sinks.metrics, "shutdown") == 30
    assert sink.last_error is not None and "Connect" in sink.last_error
    async with asyncio.timeout(1):
        await sink.flushed()  # nothing left to wait for


async def test_prune_uses_retention_and_injected_clock(sinks: Sinks, db_env: dict[str, str]) -> None:
    """prune_once deletes rows last seen before now - AUDIT_RETENTION_DAYS; 0 days disables it."""
    await migrated(sinks.engine, db_env)
    writer = sinks()
    writer.submit(rejection(1, at=T0))
    writer.submit(rejection(2, at=T0 + 50 * DAY))
    await writer.drain_once()
    assert await sinks(retention_days=0, wall_clock=lambda: T0 + 1000 * DAY).prune_once() == 0
    assert await sinks(retention_days=30, wall_clock=lambda: T0 + 60 * DAY).prune_once() == 1
    assert await table_totals(sinks.engine) == (1, 1)
    assert "audit.pruned" in sinks.log.events()


def test_realm_labels_are_bounded() -> None:
    """Configured realms, and realms whose keys verified something, get their own label up to the cap;
    untrusted, unverified or excess realms are 'other'."""
    labels = RealmLabels({"platform-admin"}, known=[TENANT_REALM], cap=3)
    assert labels.label(None) == "none"
    assert labels.label(TENANT_REALM) == TENANT_REALM
    assert labels.label("platform-admin") == "platform-admin"
    assert labels.label("evil-realm") == "other"
    other_tenant = "tenant-11111111-2222-4333-8444-555555555555"
    assert labels.label(other_tenant, Reason.UNKNOWN_REALM) == "other"
    assert labels.label(other_tenant) == "other"  # never verified
    labels.verified(other_tenant)
    assert labels.label(other_tenant) == other_tenant  # third label: at the cap
    labels.verified("tenant-22222222-2222-4333-8444-555555555555")
    assert labels.label("tenant-22222222-2222-4333-8444-555555555555") == "other"


def test_counting_sink_counts_by_reason_and_realm() -> None:
    """CountingSink counts each record by reason and bounded realm, then forwards it."""
    from webhook.audit import MemorySink

    metrics, inner = Metrics(), MemorySink()
    sink = CountingSink(inner, metrics, RealmLabels((), known=[TENANT_REALM], cap=1))
    for realm in (TENANT_REALM, TENANT_REALM, "tenant-11111111-2222-4333-8444-555555555555", None):
        sink.submit(rejection(0, realm=realm))
    value = metrics.registry.get_sample_value
    assert value("webhook_rejections_total", {"reason": "bad_signature", "realm": TENANT_REALM}) == 2
    assert value("webhook_rejections_total", {"reason": "bad_signature", "realm": "other"}) == 1
    assert value("webhook_rejections_total", {"reason": "bad_signature", "realm": "none"}) == 1
    assert len(inner.records) == 4
    assert audit_status(sink) == "ok"
