"""tenant, election_event, realm_provisioning_job: the actions' tables and the provisioning outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:04:00

Columns and defaults follow the platform's `tenant` and `election_event` (shared/design/platform.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def _uuid() -> sa.Uuid[str]:
    return sa.Uuid(as_uuid=False)


def _now() -> sa.sql.elements.ColumnElement[object]:
    return sa.func.current_timestamp()


def upgrade() -> None:
    op.create_table(
        "tenant",
        sa.Column("id", _uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("labels", _json(), nullable=True),
        sa.Column("annotations", _json(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "voting_channels", _json(), server_default=sa.text('\'{"kiosk": true, "online": true}\''), nullable=True
        ),
        sa.Column("settings", _json(), nullable=True),
        sa.Column("test", sa.Integer(), server_default=sa.text("0"), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenant_slug")),
    )
    op.create_table(
        "election_event",
        sa.Column("id", _uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=True),
        sa.Column("labels", _json(), nullable=True),
        sa.Column("annotations", _json(), nullable=True),
        sa.Column("tenant_id", _uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("presentation", _json(), nullable=True),
        sa.Column("bulletin_board_reference", _json(), nullable=True),
        sa.Column("is_archived", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("voting_channels", _json(), nullable=True),
        sa.Column("status", _json(), nullable=True),
        sa.Column("user_boards", sa.String(), nullable=True),
        sa.Column("encryption_protocol", sa.String(), server_default=sa.text("'RSA256'"), nullable=False),
        sa.Column("is_audit", sa.Boolean(), nullable=True),
        sa.Column("audit_election_event_id", _uuid(), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("alias", sa.Text(), nullable=True),
        sa.Column("statistics", _json(), server_default=sa.text("'{}'"), nullable=True),
        sa.ForeignKeyConstraint(
            ["audit_election_event_id"],
            ["election_event.id"],
            name=op.f("fk_election_event_audit_election_event_id_election_event"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenant.id"],
            name=op.f("fk_election_event_tenant_id_tenant"),
            onupdate="RESTRICT",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_election_event")),
    )
    op.create_index("ix_election_event_tenant_id", "election_event", ["tenant_id"])
    op.create_table(
        "realm_provisioning_job",
        sa.Column("id", _uuid(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False, comment="tenant or event"),
        sa.Column("realm", sa.String(length=100), nullable=False, comment="Keycloak realm name"),
        sa.Column("tenant_id", _uuid(), nullable=False),
        sa.Column("event_id", _uuid(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, comment="pending, running, done or failed"),
        sa.Column("attempts", sa.Integer(), nullable=False, comment="Provisioning attempts started"),
        sa.Column("last_error", sa.String(length=1000), nullable=True, comment="Why the last attempt failed"),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), nullable=False, comment="Due from this time (pending)"
        ),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True, comment="Lease of the running worker"),
        sa.Column("locked_by", sa.String(length=200), nullable=True, comment="Worker holding the lease"),
        sa.Column(
            "request_sha256",
            sa.CHAR(length=64),
            nullable=False,
            comment="SHA-256 of the action input that created the row (idempotency)",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('tenant', 'event')", name=op.f("ck_realm_provisioning_job_kind")),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_realm_provisioning_job_status")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_realm_provisioning_job_attempts")),
        sa.ForeignKeyConstraint(
            ["event_id"], ["election_event.id"], name=op.f("fk_realm_provisioning_job_event_id_election_event")
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], name=op.f("fk_realm_provisioning_job_tenant_id_tenant")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_realm_provisioning_job")),
        sa.UniqueConstraint("realm", name=op.f("uq_realm_provisioning_job_realm")),
        comment="Keycloak realms to provision (outbox written with the tenant/event row).",
    )
    op.create_index(
        "ix_realm_provisioning_job_status_next_attempt_at", "realm_provisioning_job", ["status", "next_attempt_at"]
    )
    op.create_index("ix_realm_provisioning_job_tenant_id", "realm_provisioning_job", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("realm_provisioning_job")  # drops its indexes too
    op.drop_table("election_event")
    op.drop_table("tenant")
