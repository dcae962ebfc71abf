"""The audit writer: its own thread and event loop turning folded rejections into rows, never losing them quietly.

Rules of this module:
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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.audit.fold import Aggregate, BucketLedger, FoldPolicy, PendingKey, merge_rows
from webhook.audit.journal import Journal
from webhook.audit.schema import MIGRATABLE, SchemaVerdict, inspect_schema
from webhook.audit.store import prune, upsert
from webhook.db.engine import migrate
from webhook.observability.metrics import AUDIT_DROP_CAUSES, Metrics
from webhook.settings import Settings

DropCause = Literal["queue_full", "journal_full", "refused", "shutdown"]
RETRY_INITIAL_SECONDS: Final = 0.05
WARN_INTERVAL_SECONDS: Final = 60.0
Row = dict[str, Any]


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
