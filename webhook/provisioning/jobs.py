"""The provisioning outbox: job rows created with their tenant or event, claimed, finished, queried.

Rules of this module:
- A job is created by `new_job` in the caller's transaction, with the row it provisions for; so a
  committed tenant or event always has its job, and a rolled-back one has none.
- Life of a job: `pending` (due at `next_attempt_at`) -> `running` (claimed: `locked_by` holds it until
  `locked_until`, and `attempts` counts the claim) -> `done`, or back to `pending` with a later
  `next_attempt_at` after a failure, or `failed` once `attempts` reaches the maximum. A `running` job
  whose lease passed (its worker died) is due again.
- Claiming is atomic: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` then `UPDATE` in one
  transaction, so concurrent workers take disjoint jobs; on SQLite one `UPDATE ... WHERE <due>
  RETURNING` (SQLite has a single writer). Finishing only applies while the lease is still ours.
- Times are the caller's (an injected clock), never the database's, so tests can move them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from webhook.db.datastore import DataStore
from webhook.db.models import RealmProvisioningJob

JOBS: Final = cast(Table, RealmProvisioningJob.__table__)
MAX_ERROR_CHARS: Final = 1000
Kind = Literal["tenant", "event"]


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job this worker holds until `locked_until`."""

    id: str
    kind: Kind
    realm: str
    tenant_id: str
    event_id: str | None
    attempts: int


def new_job(
    *, kind: Kind, realm: str, tenant_id: str, event_id: str | None, request_sha256: str, now: dt.datetime
) -> RealmProvisioningJob:
    """A pending job, due now, to add in the same transaction as its tenant or event."""
    return RealmProvisioningJob(
        id=str(uuid.uuid4()),
        kind=kind,
        realm=realm,
        tenant_id=tenant_id,
        event_id=event_id,
        status="pending",
        attempts=0,
        last_error=None,
        next_attempt_at=now,
        locked_until=None,
        locked_by=None,
        request_sha256=request_sha256,
        created_at=now,
        updated_at=now,
        completed_at=None,
    )


def _due(now: dt.datetime) -> ColumnElement[bool]:
    c = JOBS.c
    return or_(
        and_(c.status == "pending", c.next_attempt_at <= now),
        and_(c.status == "running", c.locked_until < now),
    )


def _claimed(row: Any) -> ClaimedJob:
    return ClaimedJob(row.id, row.kind, row.realm, row.tenant_id, row.event_id, row.attempts)


async def claim_due(store: DataStore, *, worker: str, now: dt.datetime, lease: float, limit: int) -> list[ClaimedJob]:
    """Take up to `limit` due jobs for `worker` (oldest due first); none is given to two workers."""
    c = JOBS.c
    claim = {
        "status": "running",
        "locked_by": worker,
        "locked_until": now + dt.timedelta(seconds=lease),
        "attempts": c.attempts + 1,
        "updated_at": now,
    }
    returned = (c.id, c.kind, c.realm, c.tenant_id, c.event_id, c.attempts)
    async with store.transaction() as session:
        if store.dialect == "postgresql":
            picked = select(c.id).where(_due(now)).order_by(c.next_attempt_at, c.id).limit(limit)
            ids = (await session.execute(picked.with_for_update(skip_locked=True))).scalars().all()
            if not ids:
                return []
            result = await session.execute(update(JOBS).where(c.id.in_(ids)).values(claim).returning(*returned))
        else:
            picked_ids = select(c.id).where(_due(now)).order_by(c.next_attempt_at, c.id).limit(limit)
            statement = update(JOBS).where(c.id.in_(picked_ids.scalar_subquery()), _due(now)).values(claim)
            result = await session.execute(statement.returning(*returned))
        return sorted((_claimed(row) for row in result), key=lambda job: job.realm)


async def finish(
    store: DataStore,
    job: ClaimedJob,
    *,
    worker: str,
    now: dt.datetime,
    error: str | None = None,
    retry_at: dt.datetime | None = None,
) -> bool:
    """Record the attempt's outcome: done (no error), pending again (`retry_at`) or failed.

    False when the lease was lost meanwhile (another worker holds the job now): nothing is written.
    """
    c = JOBS.c
    values: dict[str, Any] = {"locked_by": None, "locked_until": None, "updated_at": now}
    if error is None:
        values.update(status="done", last_error=None, completed_at=now)
    else:
        values.update(status="pending" if retry_at is not None else "failed", last_error=error[:MAX_ERROR_CHARS])
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
    statement = update(JOBS).where(c.id == job.id, c.status == "running", c.locked_by == worker).values(values)
    async with store.transaction() as session:
        result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def requeue(store: DataStore, realm: str, now: dt.datetime) -> bool:
    """Make a failed (or done) job pending again, due now, with its attempts reset."""
    c = JOBS.c
    statement = (
        update(JOBS)
        .where(c.realm == realm, c.status.in_(("failed", "done")))
        .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now, completed_at=None)
    )
    async with store.transaction() as session:
        result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def job_for_realm(session: AsyncSession, realm: str) -> RealmProvisioningJob | None:
    """The job of a realm, if any."""
    found: RealmProvisioningJob | None = await session.scalar(
        select(RealmProvisioningJob).where(RealmProvisioningJob.realm == realm)
    )
    return found


async def list_jobs(
    session: AsyncSession, *, realm: str | None = None, status: str | None = None, limit: int = 100
) -> Sequence[RealmProvisioningJob]:
    """Jobs, most recently updated first."""
    query = select(RealmProvisioningJob)
    if realm is not None:
        query = query.where(RealmProvisioningJob.realm == realm)
    if status is not None:
        query = query.where(RealmProvisioningJob.status == status)
    query = query.order_by(RealmProvisioningJob.updated_at.desc(), RealmProvisioningJob.realm).limit(limit)
    return (await session.scalars(query)).all()


@dataclass(frozen=True, slots=True)
class JobSummary:
    """The job table at a glance: how many jobs per status, and how old the oldest unfinished one is."""

    counts: dict[str, int]
    oldest_unfinished_seconds: float  # since created_at of the oldest pending/running job; 0: none


async def job_summary(store: DataStore, *, now: dt.datetime) -> JobSummary:
    """Count jobs by status and age the oldest pending or running one (one grouped query)."""
    c = JOBS.c
    query = select(c.status, func.count(), func.min(c.created_at)).group_by(c.status)
    async with store.transaction() as session:
        rows = (await session.execute(query)).all()
    counts = {str(status): int(count) for status, count, _ in rows}
    oldest = [first for status, _, first in rows if status in ("pending", "running") and first is not None]
    age = 0.0
    if oldest:
        first = min(_utc(value) for value in oldest)
        age = max(0.0, (now - first).total_seconds())
    return JobSummary(counts, age)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def job_as_dict(job: RealmProvisioningJob) -> dict[str, Any]:
    """A job as JSON-ready values (times in ISO 8601 UTC); `request_sha256` left out."""
    out: dict[str, Any] = {}
    for column in JOBS.columns:
        if column.key == "request_sha256":
            continue
        value = getattr(job, column.key)
        out[column.key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out


__all__ = [
    "JOBS",
    "ClaimedJob",
    "JobSummary",
    "claim_due",
    "finish",
    "job_as_dict",
    "job_for_realm",
    "job_summary",
    "list_jobs",
    "new_job",
    "requeue",
]
