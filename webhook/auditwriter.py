"""The durable audit sink: rejections go to the `rejected_token` table, off the request path.

Rules of this module:
- `submit` runs on the request path: it is synchronous, never awaits and does O(1) work
  (`put_nowait` on a bounded queue). A full queue drops the record and counts it (metric, and
  at most one warning log line per `warn_interval`); the request is never slowed.
- One writer task drains the queue: it folds up to `batch_size` distinct rows and writes them in
  one transaction. When that fails, the folded rows are kept (bounded by `batch_size`, while the
  queue bounds the rest) and retried with capped exponential backoff.
- The sink is `degraded` while the schema is not ready or writes fail, and for `warn_interval`
  after a drop; degraded never makes the service unready.
- `close()` flushes what is queued within `shutdown_deadline`; what is left is counted as dropped.
- Times: record times come from the records; the writer's own (drop warnings, degraded window,
  prune cutoffs) come from the injected clocks. Waits (flush interval, backoff, shutdown
  deadline) are asyncio timeouts on events, never polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, Literal, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.audit import AuditSink, RejectionRecord
from webhook.auditstore import fold_into, prune, upsert
from webhook.config import Settings
from webhook.db import make_engine, migrate
from webhook.metrics import Metrics, RealmLabels

AuditStatus = Literal["ok", "degraded"]
RETRY_INITIAL_SECONDS: Final = 0.05
WARN_INTERVAL_SECONDS: Final = 60.0


@runtime_checkable
class ReportsStatus(Protocol):
    """A sink that can tell whether it is keeping up (`/readyz` shows it)."""

    @property
    def status(self) -> AuditStatus: ...


def audit_status(sink: object) -> AuditStatus:
    """`ok` for sinks that do not report a status (memory, null, log-only)."""
    return sink.status if isinstance(sink, ReportsStatus) else "ok"


@dataclass(frozen=True, slots=True)
class WriterPolicy:
    """Sizes and times of the writer (see the AUDIT_* variables)."""

    queue_size: int = 10000
    batch_size: int = 500
    flush_interval: float = 1.0
    retry_initial: float = RETRY_INITIAL_SECONDS
    retry_max: float = 30.0
    shutdown_deadline: float = 5.0
    retention_days: int = 90
    prune_interval: float = 3600.0
    warn_interval: float = WARN_INTERVAL_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> WriterPolicy:
        """The policy the settings describe."""
        return cls(
            queue_size=settings.audit_queue_size,
            batch_size=settings.audit_batch_size,
            flush_interval=settings.audit_flush_interval,
            retry_initial=min(RETRY_INITIAL_SECONDS, settings.audit_retry_max),
            retry_max=settings.audit_retry_max,
            shutdown_deadline=settings.audit_shutdown_deadline,
            retention_days=settings.audit_retention_days,
            prune_interval=settings.audit_prune_interval,
        )


class DbAuditSink:
    """`AuditSink` writing folded rejection rows to the database from a background task."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        policy: WriterPolicy,
        metrics: Metrics,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.policy = policy
        self._engine = engine
        self._metrics = metrics
        self._log = log
        self._clock = clock
        self._wall_clock = wall_clock
        self._prepare = prepare
        self._queue: asyncio.Queue[RejectionRecord] = asyncio.Queue(policy.queue_size)
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_records = 0
        self._arrived = asyncio.Event()  # something was queued
        self._full = asyncio.Event()  # a whole batch is queued
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()  # a batch was written or given up
        self._prepared = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._failing = False
        self._last_drop_at: float | None = None
        self._last_warning_at: float | None = None
        self._dropped_since_warning = 0
        self.accepted = 0
        self.written = 0
        self._given_up = 0  # accepted, then dropped at shutdown
        self.dropped: dict[str, int] = {"queue_full": 0, "shutdown": 0}
        self.high_water = 0
        self.last_error: str | None = None
        if prepare is None:
            self._prepared.set()

    # -- the request path ---------------------------------------------------------------------

    def submit(self, record: RejectionRecord) -> None:
        """Queue the record for the writer, or drop and count it when the queue is full."""
        queue = self._queue
        if self._closed:
            self._drop(1, "shutdown")
            return
        try:
            queue.put_nowait(record)
        except asyncio.QueueFull:
            self._drop(1, "queue_full")
            return
        self.accepted += 1
        depth = queue.qsize()
        self.high_water = max(self.high_water, depth)
        self._arrived.set()
        if depth >= self.policy.batch_size:
            self._full.set()

    def _drop(self, count: int, cause: Literal["queue_full", "shutdown"]) -> None:
        self.dropped[cause] += count
        self._metrics.audit_dropped[cause].inc(count)
        now = self._clock()
        self._last_drop_at = now
        self._dropped_since_warning += count
        last = self._last_warning_at
        if last is None or now - last >= self.policy.warn_interval:
            self._last_warning_at = now
            self._log.warning(
                "audit.dropped",
                cause=cause,
                dropped=self._dropped_since_warning,
                dropped_total=sum(self.dropped.values()),
                queue_size=self.policy.queue_size,
            )
            self._dropped_since_warning = 0

    # -- state ----------------------------------------------------------------------------------

    @property
    def status(self) -> AuditStatus:
        """`degraded` while the schema is not ready or writes fail, or just after a drop."""
        if self._failing or not self._prepared.is_set():
            return "degraded"
        if self._tasks and any(task.done() for task in self._tasks) and not self._stop.is_set():
            return "degraded"
        drop = self._last_drop_at
        if drop is not None and self._clock() - drop < self.policy.warn_interval:
            return "degraded"
        return "ok"

    @property
    def depth(self) -> int:
        """Records queued or folded but not written yet."""
        return self._queue.qsize() + self._pending_records

    # -- writing --------------------------------------------------------------------------------

    def _fill(self) -> None:
        """Fold queued records into the pending batch until it holds `batch_size` distinct rows."""
        pending, queue, limit = self._pending, self._queue, self.policy.batch_size
        taken = 0
        while len(pending) < limit and taken < self.policy.queue_size:
            try:
                record = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            fold_into(pending, record)
            taken += 1
        self._pending_records += taken
        if queue.qsize() < limit:
            self._full.clear()

    async def drain_once(self) -> int:
        """Write one batch (queued records folded) in one transaction; the records it covered.

        On failure the batch stays pending (retried by the next call) and the error propagates.
        """
        self._fill()
        if not self._pending:
            return 0
        rows = list(self._pending.values())
        started = time.perf_counter()
        try:
            async with self._engine.begin() as connection:
                await upsert(connection, rows)
        except Exception as exc:
            self._metrics.audit_write_errors.inc()
            self._failed("write", exc)
            raise
        finally:
            self._metrics.audit_batch_seconds.observe(time.perf_counter() - started)
        self._succeeded("write")
        covered = self._pending_records
        self._pending.clear()
        self._pending_records = 0
        self.written += covered
        self._metrics.audit_written.inc(covered)
        self._progress.set()
        return covered

    async def flushed(self) -> None:
        """Return once every record accepted before the call is written (or dropped at shutdown)."""
        target = self.accepted
        while self.written + self._given_up < target:
            self._progress.clear()
            await self._progress.wait()

    async def _wait(self, event: asyncio.Event, seconds: float | None) -> None:
        """Wait for `event` or the stop request, at most `seconds`."""
        waiters = {asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _failed(self, what: str, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if not self._failing:  # one line per outage, not per attempt
            self._log.warning("audit.write_failed", step=what, error=self.last_error)
        self._failing = True

    def _succeeded(self, what: str) -> None:
        if self._failing:
            self._log.info("audit.write_recovered", step=what)
        self._failing = False
        self.last_error = None

    async def _attempt(self, operation: Callable[[], Awaitable[Any]], what: str) -> bool:
        try:
            await operation()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(what, exc)
            return False
        self._succeeded(what)
        return True

    async def _retrying(self, operation: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run `operation` until it succeeds or stop is requested, backing off between attempts."""
        delay = self.policy.retry_initial
        while not await self._attempt(operation, what):
            if self._stop.is_set():
                return
            await self._wait(self._stop, delay)
            delay = min(delay * 2, self.policy.retry_max)

    async def _prepare_schema(self) -> None:
        if self._prepare is not None:
            await self._prepare()
        self._prepared.set()

    async def _run_writer(self) -> None:
        if not self._prepared.is_set():
            await self._retrying(self._prepare_schema, "migrate")
        while not self._stop.is_set():
            if not self._pending and self._queue.empty():
                self._arrived.clear()
                await self._wait(self._arrived, None)
                continue
            if self._queue.qsize() < self.policy.batch_size and not self._pending:
                await self._wait(self._full, self.policy.flush_interval)
            await self._retrying(self.drain_once, "write")

    async def _run_pruner(self) -> None:
        await self._wait(self._prepared, None)
        while not self._stop.is_set():
            try:
                await self.prune_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._log.warning("audit.prune_failed", error=f"{type(exc).__name__}: {exc}"[:500])
            await self._wait(self._stop, self.policy.prune_interval)

    async def prune_once(self) -> int:
        """Delete rows older than the retention; the count deleted (0 when retention is off)."""
        days = self.policy.retention_days
        if days <= 0:
            return 0
        cutoff = dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC) - dt.timedelta(days=days)
        deleted = await prune(self._engine, cutoff)
        if deleted:
            self._log.info("audit.pruned", deleted=deleted, cutoff=cutoff.isoformat())
        return deleted

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (and, with a retention, the pruner) in the running loop."""
        loop = asyncio.get_running_loop()
        self._metrics.audit_queue_depth.set_function(lambda: self.depth)
        self._tasks.append(loop.create_task(self._run_writer(), name="audit writer"))
        if self.policy.retention_days > 0:
            self._tasks.append(loop.create_task(self._run_pruner(), name="audit pruner"))

    async def close(self) -> None:
        """Stop the tasks, flush within the shutdown deadline, count what is left as dropped."""
        deadline = asyncio.get_running_loop().time() + self.policy.shutdown_deadline
        self._stop.set()
        if self._tasks:
            _, running = await asyncio.wait(self._tasks, timeout=self.policy.shutdown_deadline)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
            for task in self._tasks:
                if not task.cancelled() and task.exception() is not None:
                    self._log.error("audit.task_crashed", task=task.get_name(), error=repr(task.exception()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._final_flush()
        self._closed = True  # from here on, late submits are dropped and counted
        left = self.depth
        if left:
            self._given_up += left
            self._drop(left, "shutdown")
            self._pending.clear()
            self._pending_records = 0
            while not self._queue.empty():
                self._queue.get_nowait()
            self._progress.set()
        self._log.info("audit.closed", written=self.written, dropped=dict(self.dropped))

    async def _final_flush(self) -> None:
        delay = self.policy.retry_initial
        if not self._prepared.is_set():
            while not await self._attempt(self._prepare_schema, "migrate"):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.policy.retry_max)
        while self.depth:
            if not await self._attempt(self.drain_once, "write"):
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.policy.retry_max)


class CountingSink:
    """Counts each rejection by reason and bounded realm label, then hands it to `inner`."""

    __slots__ = ("_counter", "_labels", "inner")

    def __init__(self, inner: AuditSink, metrics: Metrics, labels: RealmLabels) -> None:
        self.inner = inner
        self._counter = metrics.rejections
        self._labels = labels

    def submit(self, record: RejectionRecord) -> None:
        """Count, then forward (still O(1), no await)."""
        self._counter.labels(record.reason.value, self._labels.label(record.realm, record.reason)).inc()
        self.inner.submit(record)


@contextlib.asynccontextmanager
async def db_audit_sink(
    settings: Settings,
    *,
    metrics: Metrics,
    log: Any,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[DbAuditSink]:
    """The database sink the settings describe, started; closed (flushed) and disposed on exit.

    With DATABASE_AUTO_MIGRATE the writer first upgrades the schema (retried in the background:
    the service starts and answers meanwhile).
    """
    engine = make_engine(settings.database_url.reveal(), schema=settings.database_schema)
    try:
        prepare = (
            partial(migrate, engine, "upgrade", "head", schema=settings.database_schema)
            if settings.database_auto_migrate
            else None
        )
        sink = DbAuditSink(
            engine,
            policy=WriterPolicy.from_settings(settings),
            metrics=metrics,
            log=log,
            clock=clock,
            wall_clock=wall_clock,
            prepare=prepare,
        )
        sink.start()
        try:
            yield sink
        finally:
            await sink.close()
    finally:
        await engine.dispose()


__all__ = [
    "AuditStatus",
    "CountingSink",
    "DbAuditSink",
    "ReportsStatus",
    "WriterPolicy",
    "audit_status",
    "db_audit_sink",
]
