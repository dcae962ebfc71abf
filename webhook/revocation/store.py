"""The `session_revocation` table: revocations every replica must honour, and the queries on it.

Rules of this module:
- One row per revocation: a realm and a `sid`, or a realm and a `sub` with a cutoff (`before`:
  tokens of that user issued at or before it). `expires_at` is when no covered token can still be
  valid; rows past it are pruned.
- A back-channel logout row carries the logout token's `jti`: the unique (`realm`, `jti`) makes a
  replayed logout token fail to insert on every replica and after restarts (`ON CONFLICT DO
  NOTHING`, nothing returned). Operator rows (`webhook sessions revoke`) have no `jti`.
- On PostgreSQL the insert and `pg_notify(<the schema's channel>, payload)` are one transaction: listeners get the
  notification only when the row is committed, so a catch-up read never misses a notified row.
- Never the token: the table holds claims Keycloak signed (realm, sid, sub, jti) and times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

import orjson
from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, UniqueConstraint, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from webhook.db.engine import Base, UtcDateTime
from webhook.revocation.active import Revocation

CHANNEL_PREFIX: Final = "webhook_revocation_"
#: The NOTIFY channel of the schema a connection works in. LISTEN/NOTIFY channels are database-wide,
#: so deployments (or test runs) sharing one database in different schemas get a channel each:
#: computed by PostgreSQL from the connection's own `current_schema()`, for notifier and listener alike.
CHANNEL_SQL: Final = "'" + CHANNEL_PREFIX + "' || left(encode(sha256(convert_to(current_schema(), 'UTF8')), 'hex'), 32)"
SOURCES: Final = ("backchannel", "operator")


class SessionRevocation(Base):
    """One revoked session (sid) or user (sub, tokens issued up to `before`) of a realm."""

    __tablename__ = "session_revocation"
    __table_args__ = (
        UniqueConstraint("realm", "jti"),
        CheckConstraint("sid IS NOT NULL OR sub IS NOT NULL", name="target"),
        CheckConstraint("source IN ('backchannel', 'operator')", name="source"),
        Index("ix_session_revocation_expires_at", "expires_at"),
        Index("ix_session_revocation_realm_expires_at", "realm", "expires_at"),
        {"comment": "Revoked sessions (back-channel logout, operators); honoured by every replica."},
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    realm: Mapped[str] = mapped_column(String(100), comment="Realm whose tokens are revoked")
    sid: Mapped[str | None] = mapped_column(String(256), comment="Revoked session id (every token of it)")
    sub: Mapped[str | None] = mapped_column(String(256), comment="Revoked user (tokens issued up to `before`)")
    before: Mapped[dt.datetime] = mapped_column(UtcDateTime(), comment="Cutoff on iat for a user revocation")
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), comment="No covered token is valid after it")
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    source: Mapped[str] = mapped_column(String(16), comment="backchannel or operator")
    jti: Mapped[str | None] = mapped_column(String(256), comment="The logout token's jti (replay guard)")


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def to_revocation(row: SessionRevocation) -> Revocation:
    """The in-memory form of a row."""
    return Revocation(
        realm=row.realm,
        sid=row.sid,
        sub=row.sub,
        before=row.before.timestamp(),
        expires_at=row.expires_at.timestamp(),
        created_at=row.created_at.timestamp(),
    )


def payload(revocation: Revocation) -> str:
    """The NOTIFY payload (well under PostgreSQL's 8000-byte limit: names are capped at 256)."""
    return orjson.dumps(
        {
            "realm": revocation.realm,
            "sid": revocation.sid,
            "sub": revocation.sub,
            "before": revocation.before,
            "expires_at": revocation.expires_at,
            "created_at": revocation.created_at,
        }
    ).decode()


def from_payload(data: str | bytes) -> Revocation:
    """The revocation a NOTIFY payload carries; ValueError if it is not one."""
    try:
        obj: Any = orjson.loads(data)
        return Revocation(
            realm=str(obj["realm"]),
            sid=None if obj["sid"] is None else str(obj["sid"]),
            sub=None if obj["sub"] is None else str(obj["sub"]),
            before=float(obj["before"]),
            expires_at=float(obj["expires_at"]),
            created_at=float(obj["created_at"]),
        )
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a revocation payload: {type(exc).__name__}") from None


async def insert(session: AsyncSession, revocation: Revocation, *, source: str, jti: str | None) -> bool:
    """Store and (PostgreSQL) notify; False when this (realm, jti) was already taken (a replay)."""
    values = {
        "realm": revocation.realm,
        "sid": revocation.sid,
        "sub": revocation.sub,
        "before": _at(revocation.before),
        "expires_at": _at(revocation.expires_at),
        "created_at": _at(revocation.created_at),
        "source": source,
        "jti": jti,
    }
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = builder(SessionRevocation).values(**values).on_conflict_do_nothing().returning(SessionRevocation.id)
    inserted = (await session.execute(statement)).scalar_one_or_none()
    if inserted is None:
        return False
    if dialect == "postgresql":
        await session.execute(
            text(f"SELECT pg_notify({CHANNEL_SQL}, :payload)"),
            {"payload": payload(revocation)},
        )
    return True


async def active(session: AsyncSession, now: float, *, realm: str | None = None) -> Sequence[SessionRevocation]:
    """Rows not yet expired at `now` (of `realm`, when given), oldest first."""
    query = select(SessionRevocation).where(SessionRevocation.expires_at > _at(now))
    if realm is not None:
        query = query.where(SessionRevocation.realm == realm)
    return (await session.execute(query.order_by(SessionRevocation.id))).scalars().all()


async def since(session: AsyncSession, after_id: int) -> Sequence[SessionRevocation]:
    """Rows with an id above `after_id` (SQLite's single-writer poll), in id order."""
    query = select(SessionRevocation).where(SessionRevocation.id > after_id).order_by(SessionRevocation.id)
    return (await session.execute(query)).scalars().all()


async def prune(session: AsyncSession, now: float) -> int:
    """Delete rows expired at `now`; how many."""
    result = await session.execute(delete(SessionRevocation).where(SessionRevocation.expires_at <= _at(now)))
    return int(getattr(result, "rowcount", 0) or 0)


__all__ = [
    "CHANNEL_PREFIX",
    "CHANNEL_SQL",
    "SOURCES",
    "SessionRevocation",
    "active",
    "from_payload",
    "insert",
    "payload",
    "prune",
    "since",
]
