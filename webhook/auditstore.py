"""The `rejected_token` table: one row per (token hash, reason), folded, and the queries on it.

Rules of this module:
- A row holds what a rejected token *claimed* (unverified, length-capped), the SHA-256 of the
  token (never the token nor any part of it), and what Hasura forwarded about the client
  (`*_untrusted`: the caller controls it).
- Repeats fold into one row keyed by (`fold_key`, `reason`): `occurrences` adds up, `first_seen`
  is the earliest, `last_seen` the latest, and the context columns (client, request id, detail,
  hook mode) follow the latest occurrence. `fold_key` is the token's SHA-256; a request with no
  token has nothing to hash, so its key is the SHA-256 of
  `"no-token" NUL reason NUL client_ip NUL user_agent`: repeats from one client fold, different
  clients stay apart. `token_sha256` is NULL on those rows.
- `tenant_id` comes from the realm *name* (`tenant-<uuid>[-event-<uuid>]`), and only from a realm
  the verifier resolved from a configured issuer; never from other claims.
- A batch is folded in memory first (one row per key), then upserted with the dialect's
  `INSERT ... ON CONFLICT DO UPDATE`, rows sorted by key so concurrent writers lock in one order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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

from webhook.audit import RejectionRecord
from webhook.db import Base, UtcDateTime
from webhook.realms import parse_realm_name

CLAIM_CHARS: Final = 256
FORWARDED_CHARS: Final = 256
DETAIL_CHARS: Final = 512
PRUNE_CHUNK: Final = 5000
# Columns that describe the latest occurrence of a folded row (the rest is fixed by the key).
CONTEXT_COLUMNS: Final = ("client_ip_untrusted", "user_agent_untrusted", "request_id", "detail", "hook_mode")
TOP_COLUMNS: Final = {"reason": "reason", "realm": "realm", "ip": "client_ip_untrusted", "sub": "sub"}
TopBy = Literal["reason", "realm", "ip", "sub"]


class RejectedToken(Base):
    """One kind of rejection: a token hash (or client, when no token) and a reason, folded."""

    __tablename__ = "rejected_token"
    __table_args__ = (
        UniqueConstraint("fold_key", "reason"),
        CheckConstraint("source IN ('hook', 'action')", name="source"),
        CheckConstraint("occurrences >= 1", name="occurrences"),
        Index("ix_rejected_token_reason_last_seen", "reason", "last_seen"),
        Index("ix_rejected_token_realm_last_seen", "realm", "last_seen"),
        Index("ix_rejected_token_tenant_id_last_seen", "tenant_id", "last_seen"),
        {"comment": "Rejected tokens, folded by (fold_key, reason). Claims are unverified."},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    fold_key: Mapped[str] = mapped_column(
        CHAR(64), comment="token_sha256, or for a request without token SHA-256(no-token, reason, ip, ua)"
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


TABLE: Final = cast(Table, RejectedToken.__table__)


def fold_key(record: RejectionRecord) -> str:
    """The row a record folds into (with its reason); see the module rules."""
    if record.token_sha256 is not None:
        return record.token_sha256
    material = "\0".join(("no-token", record.reason.value, record.client_ip or "", record.user_agent or ""))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def _cap(value: str | None, size: int) -> str | None:
    return None if value is None else value[:size]


def row_of(record: RejectionRecord) -> dict[str, Any]:
    """The column values for one record (occurrences 1)."""
    seen = dt.datetime.fromtimestamp(record.at, dt.UTC)
    parsed = parse_realm_name(record.realm) if record.realm is not None else None
    facts = record.facts
    return {
        "fold_key": fold_key(record),
        "reason": record.reason.value,
        "token_sha256": record.token_sha256,
        "realm": _cap(record.realm, 100),
        "tenant_id": parsed.tenant_id if parsed is not None else None,
        "iss": _cap(facts.iss, CLAIM_CHARS),
        "kid": _cap(facts.kid, CLAIM_CHARS),
        "alg": _cap(facts.alg, CLAIM_CHARS),
        "sub": _cap(facts.sub, CLAIM_CHARS),
        "azp": _cap(facts.azp, CLAIM_CHARS),
        "jti": _cap(facts.jti, CLAIM_CHARS),
        "kind": _cap(facts.kind, 16),
        "client_ip_untrusted": _cap(record.client_ip, FORWARDED_CHARS),
        "user_agent_untrusted": _cap(record.user_agent, FORWARDED_CHARS),
        "hook_mode": record.hook_mode[:8],
        "source": record.source,
        "request_id": record.request_id[:FORWARDED_CHARS],
        "detail": record.detail[:DETAIL_CHARS],
        "first_seen": seen,
        "last_seen": seen,
        "occurrences": 1,
    }


def fold_into(rows: dict[tuple[str, str], dict[str, Any]], record: RejectionRecord) -> None:
    """Add one record to a batch of rows keyed by (fold_key, reason)."""
    row = row_of(record)
    key = (row["fold_key"], row["reason"])
    held = rows.get(key)
    if held is None:
        rows[key] = row
        return
    merge_rows(held, row)


def merge_rows(held: dict[str, Any], row: Mapping[str, Any]) -> None:
    """Fold `row` into `held` (same key): the same rule the upsert applies in the database."""
    held["occurrences"] += row["occurrences"]
    held["first_seen"] = min(held["first_seen"], row["first_seen"])
    if row["last_seen"] > held["last_seen"]:
        held["last_seen"] = row["last_seen"]
        for column in CONTEXT_COLUMNS:
            held[column] = row[column]


async def upsert(connection: AsyncConnection, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or fold `rows` (one per key) in the caller's transaction; returns the rows sent."""
    ordered = sorted(rows, key=lambda r: (r["fold_key"], r["reason"]))
    if not ordered:
        return 0
    dialect = connection.dialect.name
    insert = postgresql.insert(TABLE) if dialect == "postgresql" else sqlite.insert(TABLE)
    new, old = insert.excluded, TABLE.c
    newer = new.last_seen > old.last_seen
    assignments: dict[str, ColumnElement[Any]] = {
        "occurrences": old.occurrences + new.occurrences,
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
