"""session_revocation: revoked sessions and users (back-channel logout, operators)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 09:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_revocation",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("realm", sa.String(length=100), nullable=False, comment="Realm whose tokens are revoked"),
        sa.Column("sid", sa.String(length=256), nullable=True, comment="Revoked session id (every token of it)"),
        sa.Column("sub", sa.String(length=256), nullable=True, comment="Revoked user (tokens issued up to `before`)"),
        sa.Column("before", sa.DateTime(timezone=True), nullable=False, comment="Cutoff on iat for a user revocation"),
        sa.Column(
            "expires_at", sa.DateTime(timezone=True), nullable=False, comment="No covered token is valid after it"
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False, comment="backchannel or operator"),
        sa.Column("jti", sa.String(length=256), nullable=True, comment="The logout token's jti (replay guard)"),
        sa.CheckConstraint("sid IS NOT NULL OR sub IS NOT NULL", name=op.f("ck_session_revocation_target")),
        sa.CheckConstraint("source IN ('backchannel', 'operator')", name=op.f("ck_session_revocation_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_revocation")),
        sa.UniqueConstraint("realm", "jti", name=op.f("uq_session_revocation_realm_jti")),
        comment="Revoked sessions (back-channel logout, operators); honoured by every replica.",
    )
    op.create_index("ix_session_revocation_expires_at", "session_revocation", ["expires_at"])
    op.create_index("ix_session_revocation_realm_expires_at", "session_revocation", ["realm", "expires_at"])


def downgrade() -> None:
    op.drop_table("session_revocation")  # drops its indexes too
