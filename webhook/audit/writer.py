"""The durable audit sink: rejections folded in memory, written by a thread of their own, never lost quietly.

Rules of this module:
- `submit` runs on the request path: synchronous, O(1), no IO, no await. It folds the record into
  `PendingFolds` (repeats of a key cost a counter increment) under a lock held for a few dict
  operations. Memory is bounded by AUDIT_QUEUE_SIZE keys; past it records fold into overflow keys.
- The writer runs in its own thread with its own event loop and engine (`AuditWriter`), so its
  row building, upserts and journal IO never run on the service's event loop. It takes what is
  pending when a batch is full or every AUDIT_FLUSH_INTERVAL_SECONDS.
- A batch the database refuses because of its data (SQLSTATE classes 22 and 23, a failed bind) is
  bisected until the offending rows are isolated: they are counted (`refused`) and the others
  written. Any other failure is an outage: the rows go to the journal (`webhook.audit.journal`), the
  writer retries with capped backoff and replays the journal oldest first once the database is
  back; while the journal holds rows, new rows queue behind them (order kept, folding intact).
- The schema is checked before the first write (and migrated with DATABASE_AUTO_MIGRATE when it is
  empty or behind); a schema no migration can fix is reported once (log, metric, /readyz) and
  rechecked every AUDIT_RETRY_MAX_SECONDS, records going to the journal meanwhile.
- `close()` (SIGTERM) stops intake, writes what is pending to the database within
  AUDIT_SHUTDOWN_DEADLINE_SECONDS, else to the journal; a leftover journal is replayed at start.
  Only a full journal (or none configured) loses records, and every one is counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, runtime_checkable

from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.audit.fold import Aggregate, BucketLedger, FoldPolicy, PendingFolds, PendingKey, merge_rows
from webhook.audit.journal import Journal
from webhook.audit.record import AuditSink, RejectionRecord
from webhook.audit.schema import MIGRATABLE, SchemaVerdict, inspect_schema
from webhook.audit.store import prune, upsert
from webhook.config import Settings
from webhook.db.engine import make_engine, migrate
from webhook.observability.metrics import AUDIT_DROP_CAUSES, Metrics, RealmLabels

AuditStatus = Literal["ok", "degraded"]
DropCause = Literal["queue_full", "journal_full", "refused", "shutdown"]
RETRY_INITIAL_SECONDS: Final = 0.05
WARN_INTERVAL_SECONDS: Final = 60.0
THREAD_JOIN_MARGIN_SECONDS: Final = 10.0
Row = dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class WriterPolicy:
    """Sizes, times and bounds of the writer (see the AUDIT_* variables)."""

    queue_size: int = 10000
    batch_size: int = 500
    flush_interval: float = 1.0
    retry_initial: float = RETRY_INITIAL_SECONDS
    retry_max: float = 30.0
    shutdown_deadline: float = 5.0
    retention_days: int = 90
    prune_interval: float = 3600.0
    warn_interval: float = WARN_INTERVAL_SECONDS
    bucket_seconds: int = 60
    rows_per_bucket: int = 600
    journal_dir: Path | None = None
    journal_max_bytes: int = 64 << 20
    auto_migrate: bool = False
    schema: str | None = None

    def folds(self) -> FoldPolicy:
        """The folding bounds of this policy."""
        return FoldPolicy(
            bucket_seconds=self.bucket_seconds, rows_per_bucket=self.rows_per_bucket, pending_keys=self.queue_size
        )

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
            bucket_seconds=settings.audit_fold_bucket_seconds,
            rows_per_bucket=settings.audit_max_rows_per_bucket,
            journal_dir=Path(settings.audit_journal_dir) if settings.audit_journal_dir else None,
            journal_max_bytes=settings.audit_journal_max_bytes,
            auto_migrate=settings.database_auto_migrate,
            schema=settings.database_schema,
        )


def is_data_error(exc: BaseException) -> bool:
    """Whether the database refused the rows themselves (retrying them can never work)."""
    if isinstance(exc, IntegrityError):
        return True
    if isinstance(exc, DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return isinstance(code, str) and code[:2] in ("22", "23")
    # A value that failed to bind (encoding, type) before reaching the database.
    return isinstance(exc, StatementError | UnicodeError | ValueError | TypeError)


def _records(rows: Sequence[Mapping[str, Any]]) -> int:
    return sum(int(row["occurrences"]) for row in rows)


class AuditWriter:
    """Writes folded rows with one engine on one event loop: isolation, journal, replay, schema checks."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        policy: WriterPolicy,
        metrics: Metrics,
        log: Any,
        journal: Journal | None = None,
        open_journal: Callable[[], Journal | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.engine = engine
        self.journal = journal
        self._open_journal = open_journal  # opened on the first spill (nothing is created before one)
        self.ledger = BucketLedger(policy.folds())
        self._metrics = metrics
        self._log = log
        self._clock = clock
        self._wall_clock = wall_clock
        self.held: dict[tuple[str, str], Row] = {}  # rows waiting in memory when there is no journal
        self.schema: SchemaVerdict | None = None
        self.written = 0
        self.dropped: dict[str, int] = dict.fromkeys(AUDIT_DROP_CAUSES, 0)
        self.failing = False
        self.last_error: str | None = None
        self.last_drop_at: float | None = None
        self.caught_up_at = clock()
        self._next_attempt = 0.0
        self._delay = policy.retry_initial
        self._last_warning: dict[str, float] = {}
        metrics.audit_schema["unchecked"].set(1)

    # -- state -------------------------------------------------------------------------------------

    @property
    def backlog(self) -> bool:
        """Rows wait in the journal or in memory for the database."""
        return bool(self.journal) or bool(self.held)

    @property
    def waiting_records(self) -> int:
        """Records in the journal or held in memory, not in the database yet."""
        return (self.journal.records if self.journal is not None else 0) + _records(list(self.held.values()))

    def lag(self) -> float:
        """Seconds since nothing was waiting (0 when caught up)."""
        return 0.0 if not self.backlog else max(0.0, self._clock() - self.caught_up_at)

    def _warn(self, event: str, **fields: Any) -> None:
        """At most one warning line per event per `warn_interval`."""
        now = self._clock()
        last = self._last_warning.get(event)
        if last is None or now - last >= self.policy.warn_interval:
            self._last_warning[event] = now
            self._log.warning(event, **fields)

    def _drop(self, cause: DropCause, records: int, **fields: Any) -> None:
        if records:
            self.last_drop_at = self._clock()
            self.dropped[cause] += records
            self._metrics.audit_dropped[cause].inc(records)
            total = sum(self.dropped.values())
            self._warn("audit.dropped", cause=cause, dropped=records, dropped_total=total, **fields)

    def _failed(self, step: str, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self._metrics.audit_write_errors.inc()
        if not self.failing:  # one line per outage, not per attempt
            self._log.warning("audit.write_failed", step=step, error=self.last_error)
        self.failing = True
        self._next_attempt = self._clock() + self._delay
        self._delay = min(self._delay * 2, self.policy.retry_max)

    def _succeeded(self) -> None:
        if self.failing:
            self._log.info("audit.write_recovered", written=self.written)
        self.failing = False
        self.last_error = None
        self._delay = self.policy.retry_initial

    def _set_schema(self, found: SchemaVerdict) -> None:
        previous = self.schema
        self.schema = found
        for state, gauge in self._metrics.audit_schema.items():
            gauge.set(1 if state == found.state else 0)
        if previous is not None and previous.state == found.state:
            return
        if found.ok:
            if previous is not None:
                self._log.info("audit.schema_ok", revision=found.current)
        else:
            self._log.error(
                "audit.schema_unusable", state=found.state, revision=found.current, head=found.head, advice=found.advice
            )

    # -- schema --------------------------------------------------------------------------------------

    async def check_schema(self) -> bool:
        """Inspect the schema (migrating it when allowed and possible); raises when the database is unreachable."""
        found = await inspect_schema(self.engine)
        if found.state in MIGRATABLE and self.policy.auto_migrate:
            await migrate(self.engine, "upgrade", "head", schema=self.policy.schema)
            found = await inspect_schema(self.engine)
        self._set_schema(found)
        return found.ok

    # -- writing -------------------------------------------------------------------------------------

    async def _upsert(self, rows: Sequence[Row], deadline: float | None) -> None:
        started = time.perf_counter()
        try:
            if deadline is None:
                async with self.engine.begin() as connection:
                    await upsert(connection, rows)
            else:
                async with asyncio.timeout(max(0.0, deadline - self._clock())), self.engine.begin() as connection:
                    await upsert(connection, rows)
        finally:
            self._metrics.audit_batch_seconds.observe(time.perf_counter() - started)

    async def commit(self, rows: Sequence[Row], deadline: float | None = None) -> list[Row]:
        """Write `rows` in batches, isolating refused rows; returns the suffix not written (an outage)."""
        size = self.policy.batch_size
        stack = [list(rows[i : i + size]) for i in range(0, len(rows), size)][::-1]
        while stack:
            part = stack[-1]
            if deadline is not None and self._clock() >= deadline:
                break
            try:
                await self._upsert(part, deadline)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_data_error(exc):
                    self._failed("write", exc)
                    break
                stack.pop()
                if len(part) == 1:
                    self._refused(part[0], exc)
                else:  # bisect: the first half is tried first, so what is done is always a prefix
                    middle = len(part) // 2
                    stack.append(part[middle:])
                    stack.append(part[:middle])
                continue
            stack.pop()
            records = _records(part)
            self.written += records
            self._metrics.audit_written.inc(records)
        return [row for part in reversed(stack) for row in part]

    def _refused(self, row: Row, exc: BaseException) -> None:
        self._metrics.audit_refused_rows.inc()
        error = f"{type(exc).__name__}: {exc}"[:300]
        self._drop("refused", int(row["occurrences"]), reason=row["reason"], fold=row["fold"], error=error)

    def keep(self, rows: Sequence[Row]) -> None:
        """Rows the database cannot take now: to the journal, else held in memory (bounded), else dropped."""
        if not rows:
            return
        if self.journal is None and self._open_journal is not None:
            self.journal, self._open_journal = self._open_journal(), None
        journal = self.journal
        if journal is not None:
            try:
                kept = journal.append(rows)
            except OSError as exc:
                self._warn("audit.journal_failed", error=f"{type(exc).__name__}: {exc}"[:300])
                kept = 0
            self._metrics.audit_journaled.inc(_records(rows[:kept]))
            self._drop("journal_full", _records(rows[kept:]))
            return
        held = self.held
        for row in rows:
            key = (row["fold_key"], row["reason"])
            if key in held:
                merge_rows(held[key], row)
            elif len(held) < self.policy.queue_size:
                held[key] = row
            else:
                self._drop("queue_full", int(row["occurrences"]))

    def _rows(self, folds: Mapping[PendingKey, Aggregate], overflowed: int) -> list[Row]:
        """The rows for `folds` under the row bound; records past a bound are counted as overflow."""
        rows, past_bound = self.ledger.rows(folds) if folds else ([], 0)
        if overflowed + past_bound:
            self._metrics.audit_overflow.inc(overflowed + past_bound)
        return rows

    async def step(self, folds: Mapping[PendingKey, Aggregate], overflowed: int = 0) -> None:
        """Write what was folded since the last step (behind any backlog), then catch up if due."""
        rows = self._rows(folds, overflowed)
        if rows and not self.backlog and not self.failing and self.schema is not None and self.schema.ok:
            rows = await self.commit(rows)
        self.keep(rows)
        if self.backlog and self._clock() >= self._next_attempt:
            await self.catch_up()
        if not self.backlog:
            self.caught_up_at = self._clock()

    async def catch_up(self, deadline: float | None = None) -> bool:
        """Check the schema if needed, then replay the journal and held rows; True once nothing waits."""
        if self.schema is None or not self.schema.ok:
            try:
                ok = await self.check_schema()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("schema", exc)
                return False
            if not ok:
                self._next_attempt = self._clock() + self.policy.retry_max
                return False
        journal = self.journal
        while journal is not None and (segment := journal.oldest()) is not None:
            rows = journal.rows(segment)
            left = await self.commit(rows, deadline)
            done = rows[: len(rows) - len(left)]
            journal.progress(segment, len(done), _records(done))
            self._metrics.audit_replayed.inc(_records(done))
            if left:
                return False
            journal.remove(segment)
        if self.held:
            rows = list(self.held.values())
            self.held = {}
            left = await self.commit(rows, deadline)
            for row in left:
                self.held[(row["fold_key"], row["reason"])] = row
            if left:
                return False
        self._succeeded()
        self.caught_up_at = self._clock()
        return True

    async def shutdown(self, folds: Mapping[PendingKey, Aggregate], overflowed: int = 0) -> None:
        """Last step: pending rows to the database within the deadline, else to the journal."""
        deadline = self._clock() + self.policy.shutdown_deadline
        rows = self._rows(folds, overflowed)
        if self.backlog and not self.failing:
            await self.catch_up(deadline)
        if rows and not self.backlog and not self.failing and self.schema is not None and self.schema.ok:
            rows = await self.commit(rows, deadline)
        self.keep(rows)
        if self.held:  # no journal: what is held in memory dies with the process
            self._drop("shutdown", _records(list(self.held.values())))
            self.held = {}

    async def prune_once(self) -> int:
        """Delete rows older than the retention; the count deleted (0 when retention is off)."""
        days = self.policy.retention_days
        if days <= 0:
            return 0
        cutoff = dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC) - dt.timedelta(days=days)
        deleted = await prune(self.engine, cutoff)
        if deleted:
            self._log.info("audit.pruned", deleted=deleted, cutoff=cutoff.isoformat())
        return deleted


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
        key = (record.reason.value, self._labels.label(record.realm, record.reason))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._counter.labels(*key)
        child.inc()
        self.inner.submit(record)


def engine_factory(settings: Settings) -> Callable[[], AsyncEngine]:
    """Makes the writer's own engine (called in its thread: an engine belongs to one event loop)."""
    url, schema = settings.database_url.reveal(), settings.database_schema
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


__all__ = [
    "AuditStatus",
    "AuditWriter",
    "CountingSink",
    "DbAuditSink",
    "ReportsStatus",
    "WriterPolicy",
    "audit_detail",
    "audit_status",
    "db_audit_sink",
    "engine_factory",
    "is_data_error",
]
