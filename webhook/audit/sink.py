"""The durable audit sink the service submits rejections to (`DbAuditSink`), and its status for `/readyz`.

Rules of this module:
- `submit` runs on the request path: synchronous, O(1), no IO, no await. It folds the record into
  `PendingFolds` (repeats of a key cost a counter increment) under a lock held for a few dict
  operations. Memory is bounded by AUDIT_QUEUE_SIZE keys; past it records fold into overflow keys.
- The rows are written by `webhook.audit.writer.AuditWriter` in a thread of its own (see its rules).
- `close()` (SIGTERM) stops intake, writes what is pending to the database within
  AUDIT_SHUTDOWN_DEADLINE_SECONDS, else to the journal; a leftover journal is replayed at start.
  Only a full journal (or none configured) loses records, and every one is counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.audit.fold import Aggregate, PendingFolds, PendingKey
from webhook.audit.journal import Journal
from webhook.audit.record import AuditSink, RejectionRecord
from webhook.audit.writer import AuditWriter, WriterPolicy
from webhook.db.engine import make_engine
from webhook.observability.metrics import AUDIT_DROP_CAUSES, Metrics, RealmLabels
from webhook.settings import Settings

AuditStatus = Literal["ok", "degraded"]
THREAD_JOIN_MARGIN_SECONDS: Final = 10.0


@runtime_checkable
class ReportsStatus(Protocol):
    """A sink that can tell whether it is keeping up (`/readyz` shows it)."""

    @property
    def status(self) -> AuditStatus: ...


def audit_status(sink: object) -> AuditStatus:
    """`ok` for sinks that do not report a status (memory, null, log-only)."""
    return sink.status if isinstance(sink, ReportsStatus) else "ok"


def audit_detail(sink: object) -> str | None:
    """What an operator should know about the sink (a schema to fix, the last error), if anything."""
    detail = getattr(sink, "detail", None)
    return detail if isinstance(detail, str) else None


class DbAuditSink:
    """`AuditSink` folding rejections in memory and writing them from a thread of its own (see module rules)."""

    def __init__(
        self,
        connect: Callable[[], AsyncEngine],
        *,
        policy: WriterPolicy,
        metrics: Metrics,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self._connect = connect
        self._metrics = metrics
        self._log = log
        self._clock = clock
        self._wall_clock = wall_clock
        self._pending = PendingFolds(policy.folds())
        self._lock = threading.Lock()
        self._signalled = False
        self._closed = False
        self.accepted = 0
        self.late = 0  # submitted after close
        self.writer: AuditWriter | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()  # bound to the writer's loop on its first wait
        self._stop = asyncio.Event()
        self._thread: threading.Thread | None = None
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress = asyncio.Event()  # bound to the service's loop on its first wait

    # -- the request path ------------------------------------------------------------------------

    def submit(self, record: RejectionRecord) -> None:
        """Fold the record in for the writer (O(1), never blocks on IO)."""
        if self._closed:
            self.late += 1
            self._metrics.audit_dropped["shutdown"].inc()
            return
        with self._lock:
            self._pending.add(record)
            full = len(self._pending) >= self.policy.batch_size and not self._signalled
            if full:
                self._signalled = True
        self.accepted += 1
        if full:
            self._signal(self._wake)

    def _signal(self, event: asyncio.Event) -> None:
        loop = self._writer_loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the writer's loop is closing
                loop.call_soon_threadsafe(event.set)

    def _take(self) -> tuple[dict[PendingKey, Aggregate], int]:
        with self._lock:
            folds = self._pending.take()
            overflowed, self._pending.overflowed = self._pending.overflowed, 0
            self._signalled = False
        return folds, overflowed

    # -- state -----------------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Records in the database (folded repeats count one each)."""
        return self.writer.written if self.writer is not None else 0

    @property
    def dropped(self) -> dict[str, int]:
        """Records lost, by cause (each also in `webhook_audit_dropped_total`)."""
        counts = dict(self.writer.dropped) if self.writer is not None else dict.fromkeys(AUDIT_DROP_CAUSES, 0)
        counts["shutdown"] += self.late
        return counts

    @property
    def journaled(self) -> int:
        """Records waiting in the journal or held in memory for the database."""
        return self.writer.waiting_records if self.writer is not None else 0

    @property
    def depth(self) -> int:
        """Records not in the database yet: folded in memory, or waiting in the journal."""
        return self._pending.records + self.journaled

    @property
    def status(self) -> AuditStatus:
        """`degraded` while the schema is unusable, writes fail, rows wait in the journal, or after a drop."""
        writer = self.writer
        if writer is None or writer.schema is None or not writer.schema.ok or writer.failing or writer.backlog:
            return "degraded"
        if self._thread is not None and not self._thread.is_alive() and not self._closed:
            return "degraded"
        drop = writer.last_drop_at
        if drop is not None and self._clock() - drop < self.policy.warn_interval:
            return "degraded"
        return "ok"

    @property
    def detail(self) -> str | None:
        """The schema's problem and what to do, else the last write error, else None."""
        writer = self.writer
        if writer is None:
            return "starting"
        if writer.schema is not None and not writer.schema.ok:
            return f"schema {writer.schema.state}: {writer.schema.advice}"
        return writer.last_error

    # -- waiting (tests, benchmarks) -------------------------------------------------------------

    async def _until(self, done: Callable[[], bool]) -> None:
        progress = self._progress
        while not done():
            progress.clear()
            if done():
                return
            await progress.wait()

    async def flushed(self) -> None:
        """Return once every record accepted before the call is in the database or counted as dropped."""
        target = self.accepted
        await self._until(lambda: self.written + sum(self.dropped.values()) - self.late >= target)

    async def settled(self) -> None:
        """Return once every record accepted before the call is in the database, the journal, or dropped."""
        target = self.accepted
        await self._until(
            lambda: (
                self._pending.records == 0
                and self.written + self.journaled + sum(self.dropped.values()) - self.late >= target
            )
        )

    def _notify(self) -> None:
        loop, progress = self._loop, self._progress
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the service's loop is gone
                loop.call_soon_threadsafe(progress.set)

    # -- the writer thread -----------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._writer_main())
        except BaseException as exc:
            self._log.error("audit.writer_crashed", error=repr(exc)[:500])
            self._done.set_exception(exc)
        else:
            self._done.set_result(None)
        finally:
            self._started.set()
            self._notify()

    def _open_journal(self, *, existing_only: bool = False) -> Journal | None:
        directory = self.policy.journal_dir
        if directory is None or (existing_only and not directory.is_dir()):
            return None
        try:
            journal = Journal.open(directory, max_bytes=self.policy.journal_max_bytes)
        except OSError as exc:
            self._log.error("audit.journal_unavailable", directory=str(directory), error=repr(exc)[:300])
            return None
        if journal:
            self._log.info("audit.journal_found", segments=str(journal.slot), records=journal.records)
        return journal

    async def _wait(self, seconds: float) -> None:
        wake, stop = self._wake, self._stop
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        wake.clear()

    async def _writer_main(self) -> None:
        self._writer_loop = asyncio.get_running_loop()
        engine = self._connect()
        writer = AuditWriter(
            engine,
            policy=self.policy,
            metrics=self._metrics,
            log=self._log,
            journal=self._open_journal(existing_only=True),  # a predecessor's leftovers, replayed first
            open_journal=self._open_journal,
            clock=self._clock,
            wall_clock=self._wall_clock,
        )
        self.writer = writer
        self._started.set()
        pruner = asyncio.get_running_loop().create_task(self._run_pruner(writer))
        try:
            await writer.catch_up()
            self._notify()
            while not self._stop.is_set():
                await self._wait(self.policy.flush_interval)
                if self._stop.is_set():
                    break
                await writer.step(*self._take())
                self._notify()
            await writer.shutdown(*self._take())
        finally:
            pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruner
            if writer.journal is not None:
                writer.journal.close()
            await engine.dispose()
            self._notify()

    async def _run_pruner(self, writer: AuditWriter) -> None:
        stop = self._stop
        while not stop.is_set():
            if writer.schema is not None and writer.schema.ok:
                try:
                    await writer.prune_once()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._log.warning("audit.prune_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                wait = self.policy.prune_interval
            else:
                wait = min(self.policy.prune_interval, max(self.policy.retry_max, 1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread (call from the service's event loop)."""
        self._loop = asyncio.get_running_loop()
        metrics, policy = self._metrics, self.policy
        metrics.audit_queue_depth.set_function(lambda: self.depth)
        metrics.audit_journal_records.set_function(lambda: self.journaled)
        metrics.audit_journal_bytes.set_function(
            lambda: self.writer.journal.bytes if self.writer is not None and self.writer.journal is not None else 0
        )
        metrics.audit_lag_seconds.set_function(lambda: self.writer.lag() if self.writer is not None else 0.0)
        limits = metrics.audit_limits
        limits["pending_keys"].set(policy.queue_size)
        limits["rows_per_bucket"].set(policy.rows_per_bucket)
        limits["bucket_seconds"].set(policy.bucket_seconds)
        limits["journal_max_bytes"].set(policy.journal_max_bytes if policy.journal_dir is not None else 0)
        self._thread = threading.Thread(target=self._run_thread, name="audit writer", daemon=True)
        self._thread.start()
        self._started.wait()

    async def close(self) -> None:
        """Stop intake; the writer flushes to the database or the journal, then the thread ends."""
        self._closed = True
        if self._thread is None:
            return
        self._signal(self._stop)
        try:
            async with asyncio.timeout(self.policy.shutdown_deadline + THREAD_JOIN_MARGIN_SECONDS):
                await asyncio.wrap_future(self._done)
        except TimeoutError:
            self._log.error("audit.writer_stuck", pending=self.depth)
        except Exception as exc:
            self._log.error("audit.task_crashed", task="audit writer", error=repr(exc)[:500])
        self._log.info("audit.closed", written=self.written, journaled=self.journaled, dropped=self.dropped)


class CountingSink:
    """Counts each rejection by reason and bounded realm label, then hands it to `inner`."""

    __slots__ = ("_children", "_counter", "_labels", "inner")

    def __init__(self, inner: AuditSink, metrics: Metrics, labels: RealmLabels) -> None:
        self.inner = inner
        self._counter = metrics.rejections
        self._labels = labels
        # (reason, realm label) -> the counter's child: `labels()` validates and locks on every call
        # (~2 % of a rejected request in the bad scenario's profile). Bounded like the label values:
        # reasons x (the RealmLabels set + its two fixed values).
        self._children: dict[tuple[str, str], Any] = {}

    def submit(self, record: RejectionRecord) -> None:
        """Count, then forward (still O(1), no await)."""
        key = (record.reason.value, self._labels.label(record.realm))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._counter.labels(*key)
        child.inc()
        self.inner.submit(record)


def engine_factory(settings: Settings) -> Callable[[], AsyncEngine]:
    """Makes the writer's own engine (called in its thread: an engine belongs to one event loop)."""
    url, schema = settings.database_url.get_secret_value(), settings.database_schema
    return lambda: make_engine(url, schema=schema)


@contextlib.asynccontextmanager
async def db_audit_sink(
    settings: Settings,
    *,
    metrics: Metrics,
    log: Any,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[DbAuditSink]:
    """The database sink the settings describe, started; closed (flushed or journaled) on exit."""
    sink = DbAuditSink(
        engine_factory(settings),
        policy=WriterPolicy.from_settings(settings),
        metrics=metrics,
        log=log,
        clock=clock,
        wall_clock=wall_clock,
    )
    sink.start()
    try:
        yield sink
    finally:
        await sink.close()
