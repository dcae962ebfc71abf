"""api_key_event: every create, rotate and revoke of an API key (who, tenant, key, roles, when);
rejected_token.kind: api_key for rejected tokens of API keys

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_key_event",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, comment="When the operation succeeded at Keycloak"),
        sa.Column("action", sa.String(length=8), nullable=False, comment="create, rotate or revoke"),
        sa.Column(
            "tenant_id", sa.Uuid(as_uuid=False), nullable=False, comment="The key's tenant (its realm is tenant-<id>)"
        ),
        sa.Column("realm", sa.String(length=100), nullable=False, comment="Keycloak realm holding the key's client"),
        sa.Column("key_name", sa.String(length=63), nullable=False, comment="The key's name (its client id)"),
        sa.Column(
            "roles",
            sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql"),
            nullable=True,
            comment="The key's roles (JSON array)",
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True, comment="The key's expiry (none: never)"),
        sa.Column(
            "actor", sa.String(length=256), nullable=False, comment="Who: the caller's user id, or cli:<os user>"
        ),
        sa.Column("actor_realm", sa.String(length=100), nullable=True, comment="Realm of the caller's token (actions)"),
        sa.Column("source", sa.String(length=8), nullable=False, comment="action or cli"),
        sa.Column("request_id", sa.String(length=256), nullable=True, comment="Request id (actions)"),
        sa.CheckConstraint("action IN ('create', 'rotate', 'revoke')", name=op.f("ck_api_key_event_action")),
        sa.CheckConstraint("source IN ('action', 'cli')", name=op.f("ck_api_key_event_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_event")),
        comment="API keys issued, rotated and revoked (one row per operation; no secret).",
    )
    op.create_index("ix_api_key_event_tenant_id_at", "api_key_event", ["tenant_id", "at"], unique=False)
    with op.batch_alter_table("rejected_token") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sa.String(length=16),
                nullable=True,
                comment="api_key when the token carries the api_key claim (unverified); NULL otherwise",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("rejected_token") as batch:
        batch.drop_column("kind")
    op.drop_index("ix_api_key_event_tenant_id_at", table_name="api_key_event")
    op.drop_table("api_key_event")
