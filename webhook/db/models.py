"""The platform's tables this service writes: `tenant`, `election_event`, and the provisioning outbox.

Rules of this module:
- Column names, types, nullability and defaults follow the platform's `sequent_backend.tenant` and
  `sequent_backend.election_event` (shared/design/platform.md 2.1), so the service can write into an
  existing platform database (`DATABASE_SCHEMA`). Ids are UUIDs (native on PostgreSQL, 32 hex
  characters on SQLite) handled as canonical lowercase strings; JSON columns are JSONB on PostgreSQL.
- `realm_provisioning_job` is the outbox: one row per Keycloak realm to create or update, written in
  the same transaction as the tenant or event it is for (see `webhook.provisioning`). Its unique
  `realm` is what makes a realm provisioned once, whatever the number of requests or workers.
- Python `None` is SQL NULL in JSON columns (never the JSON `null` value).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import (
    CHAR,
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from webhook.db.engine import Base, UtcDateTime

#: JSON on SQLite, JSONB on PostgreSQL; None is stored as SQL NULL.
JsonValue: Final = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
JOB_KINDS: Final = ("tenant", "event")
JOB_STATUSES: Final = ("pending", "running", "done", "failed")
#: What the platform stores when an event is created without voting channels (`VotingChannels::default()`).
DEFAULT_EVENT_VOTING_CHANNELS: Final[dict[str, Any]] = {
    "online": True,
    "kiosk": None,
    "telephone": None,
    "paper": None,
    "early_voting": None,
}
#: The platform's `election_event.statistics` for a new event.
DEFAULT_EVENT_STATISTICS: Final[dict[str, Any]] = {"num_emails_sent": 0, "num_sms_sent": 0}
DEFAULT_TENANT_VOTING_CHANNELS: Final[dict[str, Any]] = {"kiosk": True, "online": True}
DEFAULT_ENCRYPTION_PROTOCOL: Final = "RSA256"


def _uuid() -> Uuid[str]:
    return Uuid(as_uuid=False)


class Tenant(Base):
    """A tenant: its realm is `tenant-<id>`."""

    __tablename__ = "tenant"

    id: Mapped[str] = mapped_column(_uuid(), primary_key=True)
    slug: Mapped[str] = mapped_column(Text(), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), server_default=func.current_timestamp())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), server_default=func.current_timestamp())
    labels: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    annotations: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    is_active: Mapped[bool] = mapped_column(Boolean(), server_default=false())
    voting_channels: Mapped[Any] = mapped_column(
        JsonValue, nullable=True, server_default=text('\'{"kiosk": true, "online": true}\'')
    )
    settings: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    test: Mapped[int | None] = mapped_column(Integer(), server_default=text("0"))


class ElectionEvent(Base):
    """An election event of a tenant: its voters' realm is `tenant-<tenant_id>-event-<id>`."""

    __tablename__ = "election_event"
    __table_args__ = (Index("ix_election_event_tenant_id", "tenant_id"),)

    id: Mapped[str] = mapped_column(_uuid(), primary_key=True)
    created_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), server_default=func.current_timestamp())
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), server_default=func.current_timestamp())
    labels: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    annotations: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    tenant_id: Mapped[str] = mapped_column(_uuid(), ForeignKey("tenant.id", onupdate="RESTRICT", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(String())
    description: Mapped[str | None] = mapped_column(Text())
    presentation: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    bulletin_board_reference: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    is_archived: Mapped[bool] = mapped_column(Boolean(), server_default=false())
    voting_channels: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    status: Mapped[Any] = mapped_column(JsonValue, nullable=True)
    user_boards: Mapped[str | None] = mapped_column(String())
    encryption_protocol: Mapped[str] = mapped_column(String(), server_default=text("'RSA256'"))
    is_audit: Mapped[bool | None] = mapped_column(Boolean())
    audit_election_event_id: Mapped[str | None] = mapped_column(_uuid(), ForeignKey("election_event.id"))
    public_key: Mapped[str | None] = mapped_column(Text())
    alias: Mapped[str | None] = mapped_column(Text())
    statistics: Mapped[Any] = mapped_column(JsonValue, nullable=True, server_default=text("'{}'"))


class RealmProvisioningJob(Base):
    """The outbox: one Keycloak realm to create or update (upsert), claimed and retried by workers."""

    __tablename__ = "realm_provisioning_job"
    __table_args__ = (
        CheckConstraint("kind IN ('tenant', 'event')", name="kind"),
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name="status"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index("ix_realm_provisioning_job_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_realm_provisioning_job_tenant_id", "tenant_id"),
        {"comment": "Keycloak realms to provision (outbox written with the tenant/event row)."},
    )

    id: Mapped[str] = mapped_column(_uuid(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), comment="tenant or event")
    realm: Mapped[str] = mapped_column(String(100), unique=True, comment="Keycloak realm name")
    tenant_id: Mapped[str] = mapped_column(_uuid(), ForeignKey("tenant.id"))
    event_id: Mapped[str | None] = mapped_column(_uuid(), ForeignKey("election_event.id"))
    status: Mapped[str] = mapped_column(String(16), comment="pending, running, done or failed")
    attempts: Mapped[int] = mapped_column(Integer(), comment="Provisioning attempts started")
    last_error: Mapped[str | None] = mapped_column(String(1000), comment="Why the last attempt failed")
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), comment="Due from this time (pending)")
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), comment="Lease of the running worker")
    locked_by: Mapped[str | None] = mapped_column(String(200), comment="Worker holding the lease")
    request_sha256: Mapped[str] = mapped_column(
        CHAR(64), comment="SHA-256 of the action input that created the row (idempotency)"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime())


API_KEY_ACTIONS: Final = ("create", "rotate", "revoke")


class ApiKeyEvent(Base):
    """One create, rotate or revoke of an API key: who, tenant, key, roles, when. Never the secret."""

    __tablename__ = "api_key_event"
    __table_args__ = (
        CheckConstraint("action IN ('create', 'rotate', 'revoke')", name="action"),
        CheckConstraint("source IN ('action', 'cli')", name="source"),
        Index("ix_api_key_event_tenant_id_at", "tenant_id", "at"),
        {"comment": "API keys issued, rotated and revoked (one row per operation; no secret)."},
    )

    id: Mapped[str] = mapped_column(_uuid(), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), comment="When the operation succeeded at Keycloak")
    action: Mapped[str] = mapped_column(String(8), comment="create, rotate or revoke")
    tenant_id: Mapped[str] = mapped_column(_uuid(), comment="The key's tenant (its realm is tenant-<id>)")
    realm: Mapped[str] = mapped_column(String(100), comment="Keycloak realm holding the key's client")
    key_name: Mapped[str] = mapped_column(String(63), comment="The key's name (its client id)")
    roles: Mapped[Any] = mapped_column(JsonValue, nullable=True, comment="The key's roles (JSON array)")
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), comment="The key's expiry (none: never)")
    actor: Mapped[str] = mapped_column(String(256), comment="Who: the caller's user id, or cli:<os user>")
    actor_realm: Mapped[str | None] = mapped_column(String(100), comment="Realm of the caller's token (actions)")
    source: Mapped[str] = mapped_column(String(8), comment="action or cli")
    request_id: Mapped[str | None] = mapped_column(String(256), comment="Request id (actions)")


__all__ = [
    "API_KEY_ACTIONS",
    "DEFAULT_ENCRYPTION_PROTOCOL",
    "DEFAULT_EVENT_STATISTICS",
    "DEFAULT_EVENT_VOTING_CHANNELS",
    "DEFAULT_TENANT_VOTING_CHANNELS",
    "JOB_KINDS",
    "JOB_STATUSES",
    "ApiKeyEvent",
    "ElectionEvent",
    "JsonValue",
    "RealmProvisioningJob",
    "Tenant",
]
