"""DbAuditSink and AuditWriter: folding in memory, its own thread, isolation, journal and replay, schema, shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.audit.support import FakeClock, RecordingLog, engine_for, forwarder, table_totals
from webhook.audit.fold import fold_records
from webhook.audit.record import RejectionRecord, token_digest
from webhook.audit.sink import CountingSink, DbAuditSink, audit_status
from webhook.audit.store import TABLE
from webhook.audit.writer import AuditWriter, WriterPolicy
from webhook.core.reasons import Reason
from webhook.core.token import TokenFacts
from webhook.db.engine import make_engine, migrate
from webhook.observability.metrics import Metrics, RealmLabels

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
    """Builds sinks writing to `url` (their own engine, in their thread) with small sizes and a recording log.

    `engine` is the test's own engine on the same database, for checking what was written.
    """

    def __init__(
        self, engine: AsyncEngine, *, url: str | None = None, schema: str | None = None, journal: Path | None = None
    ) -> None:
        self.engine = engine
        self.url = url or engine.url.render_as_string(hide_password=False)
        self.schema = schema
        self.journal = journal
        self.clock = FakeClock()
        self.log = RecordingLog()
        self.metrics = Metrics()
        self.threads: set[int | None] = set()

    def _connect(self) -> AsyncEngine:
        self.threads.add(threading.current_thread().ident)
        return make_engine(self.url, schema=self.schema)

    def __call__(self, **policy: Any) -> DbAuditSink:
        sizes: dict[str, Any] = {
            "queue_size": 100,
            "batch_size": 40,
            "flush_interval": 0.01,
            "retry_max": 0.05,
            "auto_migrate": True,
            "schema": self.schema,
            "journal_dir": self.journal,
        }
        return DbAuditSink(
            self._connect,
            policy=WriterPolicy(**{**sizes, **policy}),
            metrics=self.metrics,
            log=self.log,
            clock=time.monotonic,
            wall_clock=lambda: T0,
        )


@pytest.fixture
def sinks(engine: AsyncEngine, db_env: dict[str, str], tmp_path: Path) -> Sinks:
    return Sinks(engine, schema=schema_of(db_env), journal=tmp_path / "journal")


async def migrated(engine: AsyncEngine, db_env: dict[str, str]) -> None:
    await migrate(engine, schema=schema_of(db_env))


def dropped(metrics: Metrics, cause: str) -> float:
    return float(metrics.registry.get_sample_value("webhook_audit_dropped_total", {"cause": cause}) or 0)


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return float(metrics.registry.get_sample_value(name, labels or {}) or 0)


async def test_repeats_fold_in_memory_and_the_writer_has_its_own_thread(sinks: Sinks, db_env: dict[str, str]) -> None:
    """1,000 repeats of one verified token are one pending key and one row; the engine is made in another thread."""
    sink = sinks()
    sink.start()
    for _ in range(1000):
        sink.submit(rejection(7, reason=Reason.EXPIRED))
    assert len(sink._pending) == 1
    async with asyncio.timeout(20):
        await sink.flushed()
    await sink.close()
    assert await table_totals(sinks.engine) == (1, 1000)
    assert sinks.threads and threading.main_thread().ident not in sinks.threads


async def test_pending_keys_are_bounded_and_overflow_is_counted(sinks: Sinks, db_env: dict[str, str]) -> None:
    """Past AUDIT_QUEUE_SIZE pending keys, records fold into their bucket's overflow key: none dropped."""
    sink = sinks(queue_size=10, batch_size=1000, flush_interval=60.0)
    sink.start()
    for n in range(50):
        sink.submit(rejection(n, reason=Reason.EXPIRED))
    assert len(sink._pending) == 11  # the bound, plus the overflow key
    await sink.close()
    rows, total = await table_totals(sinks.engine)
    assert (rows, total) == (11, 50)
    assert value(sinks.metrics, "webhook_audit_overflow_total") == 40
    assert sum(sink.dropped.values()) == 0


async def test_a_refused_row_is_isolated_and_the_rest_written(sinks: Sinks, db_env: dict[str, str]) -> None:
    """A row the database refuses (CHECK violation; NUL on PostgreSQL) is bisected out, counted, the others land."""
    await migrated(sinks.engine, db_env)
    writer = AuditWriter(sinks.engine, policy=WriterPolicy(batch_size=8), metrics=sinks.metrics, log=sinks.log)
    rows, _ = fold_records([rejection(n, reason=Reason.EXPIRED) for n in range(20)])
    rows[5]["source"] = "evil"  # refused by ck_rejected_token_source everywhere
    rows[5]["occurrences"] = 3
    if sinks.engine.dialect.name == "postgresql":
        rows[13]["sub"] = "nul\x00inside"  # a raw NUL, as if the sanitiser had been bypassed
    assert await writer.commit(rows) == []
    refused = 2 if sinks.engine.dialect.name == "postgresql" else 1
    assert await table_totals(sinks.engine) == (20 - refused, 20 - refused + 1 - 3 + 2)
    assert value(sinks.metrics, "webhook_audit_refused_rows_total") == refused
    assert dropped(sinks.metrics, "refused") == 3 + (refused - 1)
    assert sinks.log.events("warning") == ["audit.dropped"]  # once per interval


async def test_database_down_spills_to_the_journal_then_replays_in_order(
    tmp_path: Path, db_env: dict[str, str], closed_port: int
) -> None:
    """Database unreachable: rows go to the journal (status degraded, lag > 0); back: replayed, nothing lost."""
    if not db_env["DATABASE_URL"].startswith("postgresql"):
        pytest.skip("the outage is a PostgreSQL port closing; SQLite has no server")
    url = db_env["DATABASE_URL"].replace("127.0.0.1:5432", f"127.0.0.1:{closed_port}")
    sinks = Sinks(engine_for(db_env), url=url, schema=schema_of(db_env), journal=tmp_path / "journal")
    sink = sinks(retry_max=0.05, queue_size=1000)
    sink.start()
    for n in range(300):
        sink.submit(rejection(n % 100, at=T0 + n, reason=Reason.EXPIRED))
    for n in range(300):
        sink.submit(rejection(1000 + n, at=T0 + n))  # unverifiable: folds by client and minute
    async with asyncio.timeout(20):
        await sink.settled()
    assert sink.written == 0 and sink.journaled == 600
    assert audit_status(sink) == "degraded"
    assert any((tmp_path / "journal").glob("slot-*/*.jsonl"))
    async with forwarder(closed_port, ("127.0.0.1", 5432)), asyncio.timeout(30):
        await sink.flushed()
        await sink.close()
    assert await table_totals(sinks.engine) == (100 + 5, 600)
    assert sum(sink.dropped.values()) == 0 and sink.journaled == 0
    assert value(sinks.metrics, "webhook_audit_replayed_total") == 600
    assert not any((tmp_path / "journal").glob("slot-*/*.jsonl"))
    await sinks.engine.dispose()


async def test_close_with_the_database_down_journals_and_the_next_start_replays(
    tmp_path: Path, db_env: dict[str, str], closed_port: int
) -> None:
    """SIGTERM with the database down: pending rows go to the journal; the next process writes them."""
    journal = tmp_path / "journal"
    down = Sinks(engine_for(db_env), url=f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test", journal=journal)
    sink = down(flush_interval=60.0, shutdown_deadline=0.5, queue_size=1000)
    sink.start()
    for n in range(200):
        sink.submit(rejection(n, reason=Reason.EXPIRED))
    await sink.close()
    assert (sink.written, sink.journaled, sum(sink.dropped.values())) == (0, 200, 0)
    up = Sinks(down.engine, journal=journal, url=db_env["DATABASE_URL"], schema=schema_of(db_env))
    again = up()
    again.start()
    async with asyncio.timeout(20):
        await again._until(lambda: again.written >= 200)
    await again.close()
    assert await table_totals(down.engine) == (200, 200)
    await down.engine.dispose()


async def test_close_flushes_what_is_pending(sinks: Sinks, db_env: dict[str, str]) -> None:
    """close() writes everything pending before the thread ends; later submits are counted, never kept."""
    sink = sinks(queue_size=2000, batch_size=3000, flush_interval=60.0, shutdown_deadline=10.0, rows_per_bucket=2000)
    sink.start()
    for n in range(1500):
        sink.submit(rejection(n, reason=Reason.EXPIRED))
    await sink.close()
    assert (sink.written, sum(sink.dropped.values())) == (1500, 0)
    assert await table_totals(sinks.engine) == (1500, 1500)
    sink.submit(rejection(0))
    assert sink.dropped["shutdown"] == 1


async def test_a_half_applied_schema_is_reported_once_not_retried(tmp_path: Path, db_env: dict[str, str]) -> None:
    """rejected_token without alembic_version: logged once with what to do, metric, detail; fixed: recovers."""
    engine = engine_for(db_env)
    async with engine.begin() as connection:
        await connection.run_sync(TABLE.create)
    sinks = Sinks(engine, url=db_env["DATABASE_URL"], schema=schema_of(db_env), journal=tmp_path / "journal")
    sink = sinks(retry_max=0.2)
    sink.start()
    for n in range(10):
        sink.submit(rejection(n, reason=Reason.EXPIRED))
    async with asyncio.timeout(20):
        await sink.settled()
        await sink._until(lambda: sink.writer is not None and sink.writer.schema is not None)
    assert audit_status(sink) == "degraded"
    assert sink.detail is not None and "unversioned" in sink.detail and "webhook db stamp" in sink.detail
    assert value(sinks.metrics, "webhook_audit_schema", {"state": "unversioned"}) == 1
    assert sinks.log.events("error") == ["audit.schema_unusable"]
    async with engine.begin() as connection:  # the operator's fix: the table is 0001's, then upgrade
        await connection.execute(text("DROP TABLE rejected_token"))
    await migrate(engine, schema=schema_of(db_env))
    async with asyncio.timeout(20):
        await sink.flushed()
    await sink.close()
    assert sinks.log.events("error") == ["audit.schema_unusable"]  # still only once
    assert await table_totals(engine) == (10, 10)
    await engine.dispose()


async def test_a_full_journal_drops_and_counts(tmp_path: Path, closed_port: int) -> None:
    """Past AUDIT_JOURNAL_MAX_BYTES, rows are dropped and counted (journal_full), never silently."""
    sinks = Sinks(
        make_engine("sqlite+aiosqlite://"),
        url=f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test",
        journal=tmp_path / "journal",
    )
    sink = sinks(journal_max_bytes=4000, batch_size=5)
    sink.start()
    for n in range(100):
        sink.submit(rejection(n, reason=Reason.EXPIRED))
    async with asyncio.timeout(20):
        await sink.settled()
    await sink.close()
    assert sink.journaled + sink.dropped["journal_full"] == 100
    assert 0 < sink.journaled < 100
    assert dropped(sinks.metrics, "journal_full") == sink.dropped["journal_full"]
    assert sum(f.stat().st_size for f in (tmp_path / "journal").glob("slot-*/*.jsonl")) <= 4000
    await sinks.engine.dispose()


async def test_prune_uses_retention_and_injected_clock(sinks: Sinks, db_env: dict[str, str]) -> None:
    """prune_once deletes rows last seen before now - AUDIT_RETENTION_DAYS; 0 days disables it."""
    await migrated(sinks.engine, db_env)

    def writer(days: int, now: float) -> AuditWriter:
        policy = WriterPolicy(retention_days=days)
        return AuditWriter(sinks.engine, policy=policy, metrics=Metrics(), log=sinks.log, wall_clock=lambda: now)

    rows, _ = fold_records([rejection(1, at=T0), rejection(2, at=T0 + 50 * DAY)])
    assert await writer(0, T0).commit(rows) == []
    assert await writer(0, T0 + 1000 * DAY).prune_once() == 0
    assert await writer(30, T0 + 60 * DAY).prune_once() == 1
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
    assert labels.label(other_tenant) == "other"  # never verified
    labels.verified(other_tenant)
    assert labels.label(other_tenant) == other_tenant  # third label: at the cap
    labels.verified("tenant-22222222-2222-4333-8444-555555555555")
    assert labels.label("tenant-22222222-2222-4333-8444-555555555555") == "other"


def test_counting_sink_counts_by_reason_and_realm() -> None:
    """CountingSink counts each record by reason and bounded realm, then forwards it."""
    from webhook.audit.record import MemorySink

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
