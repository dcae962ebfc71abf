"""Revision 0002 (tenant, election_event, realm_provisioning_job) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from tests.actions.conftest import TENANT, StackFactory
from webhook.db.datastore import DataStore
from webhook.db.engine import alembic_config, current_revision, migrate
from webhook.settings import Settings

pytestmark = pytest.mark.anyio
NEW_TABLES = {"tenant", "election_event", "realm_provisioning_job"}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _shape(connection: Connection) -> dict[str, object]:
    inspector = inspect(connection)
    return {
        "event_fks": sorted(fk["referred_table"] for fk in inspector.get_foreign_keys("election_event")),
        "job_uniques": [u["column_names"] for u in inspector.get_unique_constraints("realm_provisioning_job")],
        "tenant_uniques": [u["column_names"] for u in inspector.get_unique_constraints("tenant")],
        "event_columns": [c["name"] for c in inspector.get_columns("election_event")],
    }


def _check(connection: Connection) -> None:
    command.check(alembic_config(connection))


async def test_upgrade_and_downgrade_0002(db_env: dict[str, str]) -> None:
    """Empty -> head creates the three tables with their keys; -> 0001 drops only them; -> base empties."""
    store = DataStore.from_settings(Settings.from_environ(db_env, require_keycloak=False))
    schema = store.schema
    try:
        await migrate(store.engine, schema=schema)
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_tables) == NEW_TABLES | {
                "rejected_token",
                "session_revocation",
                "api_key_event",
            }
            shape = await connection.run_sync(_shape)
            await connection.run_sync(_check)
        assert shape["event_fks"] == ["election_event", "tenant"]
        assert shape["job_uniques"] == [["realm"]]
        assert shape["tenant_uniques"] == [["slug"]]
        assert shape["event_columns"] == [
            "id",
            "created_at",
            "updated_at",
            "labels",
            "annotations",
            "tenant_id",
            "name",
            "description",
            "presentation",
            "bulletin_board_reference",
            "is_archived",
            "voting_channels",
            "status",
            "user_boards",
            "encryption_protocol",
            "is_audit",
            "audit_election_event_id",
            "public_key",
            "alias",
            "statistics",
        ]
        await migrate(store.engine, "downgrade", "0001", schema=schema)
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_tables) == {"rejected_token"}
        assert await current_revision(store.engine) == "0001"
        await migrate(store.engine, "downgrade", "base", schema=schema)
        async with store.engine.connect() as connection:
            assert await connection.run_sync(_tables) == set()
    finally:
        await store.dispose()


async def test_service_auto_migrates_in_the_background(make_sqlite_stack: StackFactory) -> None:
    """With DATABASE_AUTO_MIGRATE the service migrates at start (beside the audit writer); then the actions work."""
    async with make_sqlite_stack(prepare=False, DATABASE_AUTO_MIGRATE="true") as stack:
        async with asyncio.timeout(10):
            await stack.store.ready.wait()
        verdict = await stack.call("insertElectionEvent", {"tenant_id": TENANT, "name": "x"})
        assert verdict.code == "not-found"  # migrated: the query ran; the tenant is just not registered
