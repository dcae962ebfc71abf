"""rejected_token: the rejected-token audit table

Revision ID: 0001
Revises:
Create Date: 2026-11-29 21:34:50
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLAIM = 256


def upgrade() -> None:
    op.create_table(
        "rejected_token",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "fold_key",
            sa.CHAR(length=64),
            nullable=False,
            comment="token_sha256, or for a request without token SHA-256(no-token, reason, ip, ua)",
        ),
        sa.Column("reason", sa.String(length=32), nullable=False, comment="Reason code (see the README)"),
        sa.Column(
            "token_sha256",
            sa.CHAR(length=64),
            nullable=True,
            comment="SHA-256 (hex) of the presented credential; NULL without one",
        ),
        sa.Column(
            "realm", sa.String(length=100), nullable=True, comment="Trusted realm the issuer named (NULL if none)"
        ),
        sa.Column(
            "tenant_id",
            sa.Uuid(as_uuid=False),
            nullable=True,
            comment="Tenant of the realm, from its name tenant-<uuid>...",
        ),
        sa.Column("iss", sa.String(length=CLAIM), nullable=True, comment="Claimed issuer (unverified)"),
        sa.Column("kid", sa.String(length=CLAIM), nullable=True, comment="Claimed key id (unverified)"),
        sa.Column("alg", sa.String(length=CLAIM), nullable=True, comment="Claimed algorithm (unverified)"),
        sa.Column("sub", sa.String(length=CLAIM), nullable=True, comment="Claimed subject (unverified)"),
        sa.Column("azp", sa.String(length=CLAIM), nullable=True, comment="Claimed client (unverified)"),
        sa.Column("jti", sa.String(length=CLAIM), nullable=True, comment="Claimed token id (unverified)"),
        sa.Column(
            "client_ip_untrusted",
            sa.String(length=256),
            nullable=True,
            comment="Client IP as forwarded by Hasura (untrusted), latest",
        ),
        sa.Column(
            "user_agent_untrusted",
            sa.String(length=256),
            nullable=True,
            comment="User agent as forwarded by Hasura (untrusted), latest",
        ),
        sa.Column("hook_mode", sa.String(length=8), nullable=False, comment="GET or POST (auth hook mode), latest"),
        sa.Column("source", sa.String(length=8), nullable=False, comment="hook or action"),
        sa.Column("request_id", sa.String(length=256), nullable=False, comment="Request id, latest"),
        sa.Column("detail", sa.String(length=512), nullable=False, comment="Operator-facing detail, latest"),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("source IN ('hook', 'action')", name=op.f("ck_rejected_token_source")),
        sa.CheckConstraint("occurrences >= 1", name=op.f("ck_rejected_token_occurrences")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_token")),
        sa.UniqueConstraint("fold_key", "reason", name=op.f("uq_rejected_token_fold_key_reason")),
        comment="Rejected tokens, folded by (fold_key, reason). Claims are unverified.",
    )
    op.create_index(op.f("ix_rejected_token_last_seen"), "rejected_token", ["last_seen"])
    op.create_index("ix_rejected_token_reason_last_seen", "rejected_token", ["reason", "last_seen"])
    op.create_index("ix_rejected_token_realm_last_seen", "rejected_token", ["realm", "last_seen"])
    op.create_index("ix_rejected_token_tenant_id_last_seen", "rejected_token", ["tenant_id", "last_seen"])
    op.create_index(op.f("ix_rejected_token_client_ip_untrusted"), "rejected_token", ["client_ip_untrusted"])
    op.create_index(op.f("ix_rejected_token_sub"), "rejected_token", ["sub"])
    op.create_index(op.f("ix_rejected_token_token_sha256"), "rejected_token", ["token_sha256"])


def downgrade() -> None:
    op.drop_table("rejected_token")  # drops its indexes too
