"""rejected_token: fold kinds and distinct-token counts (bounded audit under floods of garbage)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:40:00

Unverifiable rejections now fold by (reason, source, realm, client, time bucket) instead of one row
per token: `fold` says what a row stands for, `distinct_tokens` how many tokens it folds. Rows
written before this revision without a token (their key was the client) become `client`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOLD_COMMENT = (
    "token: one verified token; bucket: unverifiable rejections of one client, realm and "
    "time bucket; overflow: past the row bound of a bucket; client: a request without token (before 0003)"
)


def upgrade() -> None:
    with op.batch_alter_table("rejected_token") as batch:
        batch.add_column(
            sa.Column("fold", sa.String(length=8), server_default="token", nullable=False, comment=FOLD_COMMENT)
        )
        batch.add_column(
            sa.Column(
                "distinct_tokens",
                sa.BigInteger(),
                server_default="1",
                nullable=False,
                comment="Distinct tokens folded into the row (approximate past 64)",
            )
        )
    op.execute("UPDATE rejected_token SET fold = 'client', distinct_tokens = 0 WHERE token_sha256 IS NULL")
    with op.batch_alter_table("rejected_token") as batch:
        batch.create_check_constraint(
            op.f("ck_rejected_token_fold"), "fold IN ('token', 'bucket', 'overflow', 'client')"
        )
        batch.alter_column(
            "fold_key",
            existing_type=sa.CHAR(length=64),
            existing_nullable=False,
            comment="token_sha256 (fold token), else SHA-256 of the bucket key (see fold)",
            existing_comment="token_sha256, or for a request without token SHA-256(no-token, reason, ip, ua)",
        )


def downgrade() -> None:
    with op.batch_alter_table("rejected_token") as batch:
        batch.drop_constraint(op.f("ck_rejected_token_fold"), type_="check")
        batch.drop_column("distinct_tokens")
        batch.drop_column("fold")
        batch.alter_column(
            "fold_key",
            existing_type=sa.CHAR(length=64),
            existing_nullable=False,
            comment="token_sha256, or for a request without token SHA-256(no-token, reason, ip, ua)",
            existing_comment="token_sha256 (fold token), else SHA-256 of the bucket key (see fold)",
        )
