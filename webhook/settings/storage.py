"""The database and audit settings: where rows go, how they are migrated, batched, journaled, pruned.

Rules of this module: fields only, each read from the variable its `env(...)` names; a validator
resolves DATABASE_AUTO_MIGRATE=auto from the database URL declared above it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ValidationInfo, field_validator

from webhook.settings.source import EnvironmentSettings
from webhook.settings.types import Database, Flag, OptionalSchema, Text, env, seconds, within


class StorageSettings(EnvironmentSettings):
    """The database (audit, tenants, events, jobs) and the audit writer's bounds."""

    database_url: Database = env(
        "DATABASE_URL",
        "sqlite+aiosqlite:///var/webhook.sqlite3",
        (
            "SQLAlchemy URL of the database (audit, tenants, events, provisioning jobs): "
            "`sqlite+aiosqlite:///<file>` (dev; the directory is created) or "
            "`postgresql+asyncpg://user:password@host/db` (`postgres://` and `postgresql://` mean asyncpg). "
            "The password is masked in every output."
        ),
        "postgresql+asyncpg://webhook:secret@postgres:5432/webhook",
        secret=True,
    )
    database_schema: OptionalSchema = env(
        "DATABASE_SCHEMA",
        "",
        (
            "PostgreSQL schema holding the service's tables (created by the migrations if missing). Empty: "
            "the connection's default (`public`). Ignored on SQLite."
        ),
        "webhook",
    )
    database_auto_migrate: Flag = env(
        "DATABASE_AUTO_MIGRATE",
        "auto",
        (
            "Upgrade the database to the latest migration when the service starts (in the background: the "
            "hook never waits for it). auto: yes on SQLite, no on PostgreSQL (run `webhook db upgrade`)."
        ),
        "false",
    )
    audit_queue_size: Annotated[int, within(1, 10_000_000)] = env(
        "AUDIT_QUEUE_SIZE",
        "10000",
        (
            "Distinct audit keys (a verified token, or a client/realm/bucket) folded in memory for the "
            "writer; past it, records fold into their bucket's overflow row (counted, never dropped)."
        ),
        "10000",
    )
    audit_batch_size: Annotated[int, within(1, 100_000)] = env(
        "AUDIT_BATCH_SIZE", "500", "Most distinct audit rows written in one transaction.", "500"
    )
    audit_flush_interval: Annotated[float, seconds(0.001, 3600)] = env(
        "AUDIT_FLUSH_INTERVAL_SECONDS",
        "1",
        "Longest time a rejection waits in the queue before its batch is written.",
        "0.5",
    )
    audit_retry_max: Annotated[float, seconds(0.01, 3600)] = env(
        "AUDIT_RETRY_MAX_SECONDS",
        "30",
        "Cap of the exponential backoff between attempts while the audit database fails.",
        "30",
    )
    audit_retention_days: Annotated[int, within(0, 36500)] = env(
        "AUDIT_RETENTION_DAYS",
        "90",
        (
            "Audit rows whose last_seen is older than this are pruned (periodically and by `webhook audit "
            "prune`). 0: never prune automatically."
        ),
        "30",
    )
    audit_prune_interval: Annotated[float, seconds(1, 31_536_000)] = env(
        "AUDIT_PRUNE_INTERVAL_SECONDS", "3600", "Time between two periodic prunes of the audit table.", "3600"
    )
    audit_shutdown_deadline: Annotated[float, seconds(0, 3600)] = env(
        "AUDIT_SHUTDOWN_DEADLINE_SECONDS",
        "5",
        "At shutdown, how long the audit writer may take to flush its queue; what is left is dropped and counted.",
        "5",
    )
    audit_journal_dir: Text = env(
        "AUDIT_JOURNAL_DIR",
        "var/audit-journal",
        (
            "Local directory where audit rows wait while the database cannot take them (one `slot-<n>` per "
            "process, fsync'd per batch, replayed in order when the database is back and at the next start). "
            "Empty: no journal (rows wait in memory, up to AUDIT_QUEUE_SIZE, and die with the process)."
        ),
        "/var/lib/webhook/audit/record-journal",
    )
    audit_journal_max_bytes: Annotated[int, within(65536, 1 << 40)] = env(
        "AUDIT_JOURNAL_MAX_BYTES",
        "67108864",
        (
            "Most bytes the audit journal may hold (64 MiB; a folded row is ~0.6 KB); past it, rows are "
            'dropped and counted (`webhook_audit_dropped_total{cause="journal_full"}`).'
        ),
        "67108864",
    )
    audit_fold_bucket_seconds: Annotated[int, within(1, 86400)] = env(
        "AUDIT_FOLD_BUCKET_SECONDS",
        "60",
        (
            "Width of the time bucket unverifiable rejections (no valid signature) fold into: one row per "
            "reason, source, realm and client IP per bucket, with occurrences and distinct tokens."
        ),
        "60",
    )
    audit_max_rows_per_bucket: Annotated[int, within(1, 10_000_000)] = env(
        "AUDIT_MAX_ROWS_PER_BUCKET",
        "600",
        (
            "Most distinct audit rows written per bucket (both kinds); past it, records fold into one "
            "overflow row per reason and source per bucket (`webhook_audit_overflow_total`)."
        ),
        "600",
    )

    @field_validator("database_auto_migrate", mode="before")
    @classmethod
    def _auto_migrate(cls, value: object, info: ValidationInfo) -> object:
        """auto: migrate SQLite at start, never PostgreSQL (run `webhook db upgrade`)."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            url = info.data.get("database_url")
            return url is not None and url.get_secret_value().startswith("sqlite")
        return value
