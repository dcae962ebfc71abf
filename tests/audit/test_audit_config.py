"""The audit's settings (declared, validated, password masked) and its Hasura metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from webhook.audit.store import TABLE
from webhook.cli import main
from webhook.settings import VARIABLES, ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
METADATA = ROOT / "hasura_metadata"
NEW_VARIABLES = {
    "DATABASE_URL",
    "DATABASE_SCHEMA",
    "DATABASE_AUTO_MIGRATE",
    "AUDIT_QUEUE_SIZE",
    "AUDIT_BATCH_SIZE",
    "AUDIT_FLUSH_INTERVAL_SECONDS",
    "AUDIT_RETRY_MAX_SECONDS",
    "AUDIT_RETENTION_DAYS",
    "AUDIT_PRUNE_INTERVAL_SECONDS",
    "AUDIT_SHUTDOWN_DEADLINE_SECONDS",
}


def settings(**env: str) -> Settings:
    return Settings.from_environ(env, require_keycloak=False)


def test_variables_are_declared_with_help() -> None:
    """Every audit variable is in VARIABLES with a help text and an example."""
    declared = {v.name: v for v in VARIABLES}
    assert declared.keys() >= NEW_VARIABLES
    assert all(declared[name].help and declared[name].example for name in NEW_VARIABLES)


def test_defaults() -> None:
    """By default the audit goes to a SQLite file under var/, migrated at start; PostgreSQL is migrated by hand."""
    default = settings()
    assert default.database_url.get_secret_value() == "sqlite+aiosqlite:///var/webhook.sqlite3"
    assert default.database_auto_migrate is True
    assert default.database_schema is None
    assert (default.audit_queue_size, default.audit_batch_size, default.audit_retention_days) == (10000, 500, 90)
    postgres = settings(DATABASE_URL="postgres://u@db/x")
    assert postgres.database_url.get_secret_value() == "postgresql+asyncpg://u@db/x"
    assert postgres.database_auto_migrate is False
    assert settings(DATABASE_URL="postgres://u@db/x", DATABASE_AUTO_MIGRATE="true").database_auto_migrate is True
    assert settings(DATABASE_AUTO_MIGRATE="off").database_auto_migrate is False
    assert settings(DATABASE_SCHEMA="webhook_audit").database_schema == "webhook_audit"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_SCHEMA", "Audit-Schema"),
        ("DATABASE_SCHEMA", 'x"; drop'),
        ("DATABASE_AUTO_MIGRATE", "maybe"),
        ("AUDIT_QUEUE_SIZE", "0"),
        ("AUDIT_BATCH_SIZE", "many"),
        ("AUDIT_FLUSH_INTERVAL_SECONDS", "nan"),
        ("AUDIT_FLUSH_INTERVAL_SECONDS", "0"),
        ("AUDIT_RETRY_MAX_SECONDS", "-1"),
        ("AUDIT_RETENTION_DAYS", "-1"),
        ("AUDIT_PRUNE_INTERVAL_SECONDS", "0"),
        ("AUDIT_SHUTDOWN_DEADLINE_SECONDS", "x"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    """A bad audit or database value raises ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=f"^{name}: "):
        settings(**{name: value})


def test_database_password_is_masked() -> None:
    """The password in DATABASE_URL (user info or query) never shows in repr, describe() or check-config."""
    url = "postgresql+asyncpg://webhook:hunter2-secret@db:5432/audit?password=query-secret"
    loaded = settings(DATABASE_URL=url)
    shown = [repr(loaded), str(loaded.describe()), str(loaded.database_url), repr(loaded.database_url)]
    for text in shown:
        assert "hunter2-secret" not in text and "query-secret" not in text
    assert "webhook:***@db:5432/audit" in str(loaded.database_url)
    assert "hunter2-secret" in loaded.database_url.get_secret_value()
    result = CliRunner().invoke(main, ["check-config"], env={"KEYCLOAK_URL": "http://127.0.0.1:1", "DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "hunter2-secret" not in result.output and "webhook:***@db" in result.output


def _load(path: Path) -> Any:
    """A metadata file with Hasura's `"!include <path>"` strings replaced by the included file."""
    return _resolve(yaml.safe_load(path.read_text()), path.parent)


def _resolve(data: Any, base: Path) -> Any:
    if isinstance(data, str) and data.startswith("!include "):
        return _load(base / data.removeprefix("!include "))
    if isinstance(data, list):
        return [_resolve(item, base) for item in data]
    if isinstance(data, dict):
        return {key: _resolve(value, base) for key, value in data.items()}
    return data


def test_hasura_metadata_tracks_the_table_read_only() -> None:
    """Hasura tracks rejected_token: audit-reader sees its tenant's rows, platform-operator all; nobody writes."""
    assert _load(METADATA / "version.yaml") == {"version": 3}
    (source,) = _load(METADATA / "databases" / "databases.yaml")
    assert (source["name"], source["kind"]) == ("default", "postgres")
    assert source["configuration"]["connection_info"]["database_url"] == {"from_env": "PG_DATABASE_URL"}
    (table,) = [t for t in source["tables"] if t["table"]["name"] == TABLE.name]
    assert table["table"] == {"name": TABLE.name, "schema": "public"}
    assert not {"insert_permissions", "update_permissions", "delete_permissions"} & table.keys()
    permissions = {p["role"]: p["permission"] for p in table["select_permissions"]}
    assert permissions.keys() == {"audit-reader", "platform-operator"}
    assert permissions["audit-reader"]["filter"] == {"tenant_id": {"_eq": "X-Hasura-Tenant-Id"}}
    assert permissions["platform-operator"]["filter"] == {}
    columns = {c.name for c in TABLE.columns}
    assert set(permissions["platform-operator"]["columns"]) == columns
    assert set(permissions["audit-reader"]["columns"]) <= columns
    assert "tenant_id" in permissions["audit-reader"]["columns"]
    assert TABLE.name not in (METADATA / "actions.yaml").read_text()  # no action writes the audit
