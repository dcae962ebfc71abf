"""The `rejected_token` table: folded rejection rows, and the queries on it.

Rules of this module:
- A row holds what a rejected token *claimed* (unverified, length-capped, made safe), the SHA-256
  of the token (never the token nor any part of it), and what Hasura forwarded about the client
  (`*_untrusted`: the caller controls it).
- Rows are keyed by (`fold_key`, `reason`); `fold` says what a row stands for (`token`: one token
  whose signature verified; `bucket`: the unverifiable rejections of one client and realm in one
  time bucket; `overflow`: what came past the row bound of a bucket; `client`: rows written before
  migration 0003 for a request without token). `webhook.audit.fold` builds the rows.
- Repeats fold: `occurrences` adds up, `distinct_tokens` keeps the larger estimate, `first_seen`
  is the earliest, `last_seen` the latest, and the context columns (client, claims, request id,
  detail, hook mode) follow the latest occurrence.
- `tenant_id` comes from the realm *name* (`tenant-<uuid>[-event-<uuid>]`), and only from a realm
  the verifier resolved from a configured issuer; never from other claims.
- A batch is upserted with the dialect's `INSERT ... ON CONFLICT DO UPDATE` on the unique
  (fold_key, reason) index, rows sorted by key so concurrent writers lock in one order: the cost of
  a batch depends on its rows, not on the size of the table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    ColumnElement,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    Uuid,
    case,
    delete,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from webhook.audit.fold import CONTEXT_COLUMNS
from webhook.audit.record import CLAIM_CHARS, DETAIL_CHARS, FORWARDED_CHARS
from webhook.db.engine import Base, UtcDateTime

PRUNE_CHUNK: Final = 5000
FOLDS: Final = ("token", "bucket", "overflow", "client")
TOP_COLUMNS: Final = {"reason": "reason", "realm": "realm", "ip": "client_ip_untrusted", "sub": "sub"}
TopBy = Literal["reason", "realm", "ip", "sub"]


class RejectedToken(Base):
    """One kind of rejection: a token hash (or client, when no token) and a reason, folded."""

    __tablename__ = "rejected_token"
    __table_args__ = (
        UniqueConstraint("fold_key", "reason"),
        CheckConstraint("source IN ('hook', 'action')", name="source"),
        CheckConstraint("occurrences >= 1", name="occurrences"),
        CheckConstraint("fold IN ('token', 'bucket', 'overflow', 'client')", name="fold"),
        Index("ix_rejected_token_reason_last_seen", "reason", "last_seen"),
        Index("ix_rejected_token_realm_last_seen", "realm", "last_seen"),
        Index("ix_rejected_token_tenant_id_last_seen", "tenant_id", "last_seen"),
        {"comment": "Rejected tokens, folded by (fold_key, reason). Claims are unverified."},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    fold_key: Mapped[str] = mapped_column(
        CHAR(64), comment="token_sha256 (fold token), else SHA-256 of the bucket key (see fold)"
    )
    reason: Mapped[str] = mapped_column(String(32), comment="Reason code (see the README)")
    token_sha256: Mapped[str | None] = mapped_column(
        CHAR(64), index=True, comment="SHA-256 (hex) of the presented credential; NULL without one"
    )
    realm: Mapped[str | None] = mapped_column(String(100), comment="Trusted realm the issuer named (NULL if none)")
    tenant_id: Mapped[str | None] = mapped_column(
        Uuid(as_uuid=False), comment="Tenant of the realm, from its name tenant-<uuid>..."
    )
    iss: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), comment="Claimed issuer (unverified)")
    kid: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), comment="Claimed key id (unverified)")
    alg: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), comment="Claimed algorithm (unverified)")
    sub: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), index=True, comment="Claimed subject (unverified)")
    azp: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), comment="Claimed client (unverified)")
    jti: Mapped[str | None] = mapped_column(String(CLAIM_CHARS), comment="Claimed token id (unverified)")
    kind: Mapped[str | None] = mapped_column(
        String(16), comment="api_key when the token carries the api_key claim (unverified); NULL otherwise"
    )
    client_ip_untrusted: Mapped[str | None] = mapped_column(
        String(FORWARDED_CHARS), index=True, comment="Client IP as forwarded by Hasura (untrusted), latest"
    )
    user_agent_untrusted: Mapped[str | None] = mapped_column(
        String(FORWARDED_CHARS), comment="User agent as forwarded by Hasura (untrusted), latest"
    )
    hook_mode: Mapped[str] = mapped_column(String(8), comment="GET or POST (auth hook mode), latest")
    source: Mapped[str] = mapped_column(String(8), comment="hook or action")
    request_id: Mapped[str] = mapped_column(String(FORWARDED_CHARS), comment="Request id, latest")
    detail: Mapped[str] = mapped_column(String(DETAIL_CHARS), comment="Operator-facing detail, latest")
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime(), index=True)
    occurrences: Mapped[int] = mapped_column(BigInteger())
    fold: Mapped[str] = mapped_column(
        String(8),
        server_default="token",
        comment="token: one verified token; bucket: unverifiable rejections of one client, realm and "
        "time bucket; overflow: past the row bound of a bucket; client: a request without token (before 0003)",
    )
    distinct_tokens: Mapped[int] = mapped_column(
        BigInteger(), server_default="1", comment="Distinct tokens folded into the row (approximate past 64)"
    )


TABLE: Final = cast(Table, RejectedToken.__table__)


async def upsert(connection: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or fold `rows` (one per key) in the caller's transaction; returns the rows sent."""
    ordered = sorted(rows, key=lambda r: (r["fold_key"], r["reason"]))
    if not ordered:
        return 0
    dialect = connection.dialect.name
    insert = postgresql.insert(TABLE) if dialect == "postgresql" else sqlite.insert(TABLE)
    new, old = insert.excluded, TABLE.c
    newer = new.last_seen > old.last_seen
    bigger = new.distinct_tokens > old.distinct_tokens
    assignments: dict[str, ColumnElement[Any]] = {
        "occurrences": old.occurrences + new.occurrences,
        "distinct_tokens": case((bigger, new.distinct_tokens), else_=old.distinct_tokens),
        "first_seen": case((new.first_seen < old.first_seen, new.first_seen), else_=old.first_seen),
        "last_seen": case((newer, new.last_seen), else_=old.last_seen),
    }
    for column in CONTEXT_COLUMNS:
        assignments[column] = case((newer, new[column]), else_=old[column])
    statement = insert.on_conflict_do_update(index_elements=[old.fold_key, old.reason], set_=assignments)
    await connection.execute(statement, ordered)
    return len(ordered)


async def prune(engine: AsyncEngine, cutoff: dt.datetime) -> int:
    """Delete rows last seen before `cutoff`, one transaction per chunk; returns the count deleted."""
    total = 0
    while True:
        async with engine.begin() as connection:
            chunk = select(TABLE.c.id).where(TABLE.c.last_seen < cutoff).limit(PRUNE_CHUNK)
            result = await connection.execute(delete(TABLE).where(TABLE.c.id.in_(chunk)))
        deleted = int(result.rowcount)
        total += deleted
        if deleted < PRUNE_CHUNK:
            return total


@dataclass(frozen=True, slots=True)
class Filters:
    """What `webhook audit list/top` narrows rows by (all optional)."""

    since: dt.datetime | None = None
    reason: str | None = None
    realm: str | None = None
    sub: str | None = None
    ip: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        c = TABLE.c
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(c.last_seen >= self.since)
        for column, value in (
            (c.reason, self.reason),
            (c.realm, self.realm),
            (c.sub, self.sub),
            (c.client_ip_untrusted, self.ip),
        ):
            if value is not None:
                out.append(column == value)
        return out


async def list_rows(session: AsyncSession, filters: Filters, limit: int) -> Sequence[RejectedToken]:
    """Rows matching `filters`, most recently seen first."""
    query = (
        select(RejectedToken)
        .where(*filters.clauses())
        .order_by(RejectedToken.last_seen.desc(), RejectedToken.id.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


@dataclass(frozen=True, slots=True)
class TopEntry:
    """One group of `webhook audit top`."""

    value: str | None
    occurrences: int
    rows: int
    last_seen: dt.datetime


async def top(session: AsyncSession, by: TopBy, filters: Filters, limit: int) -> list[TopEntry]:
    """Groups by `by` over rows matching `filters`, largest occurrence sum first."""
    column = TABLE.c[TOP_COLUMNS[by]]
    occurrences = func.sum(TABLE.c.occurrences)
    query = (
        select(column, occurrences, func.count(), func.max(TABLE.c.last_seen))
        .where(*filters.clauses())
        .group_by(column)
        .order_by(occurrences.desc(), column)
        .limit(limit)
    )
    result = await session.execute(query)
    return [TopEntry(value, int(total), int(rows), last) for value, total, rows, last in result]


def as_dict(row: RejectedToken) -> dict[str, Any]:
    """A row as JSON-ready values (times in ISO 8601 UTC)."""
    out: dict[str, Any] = {}
    for column in TABLE.columns:
        value = getattr(row, column.key)
        out[column.key] = value.isoformat() if isinstance(value, dt.datetime) else value
    return out
