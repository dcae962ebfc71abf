"""`webhook worker` and `webhook provisioning status|retry|render` against a database and a fake Keycloak."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator

import orjson
import pytest
from click.testing import CliRunner

from tests.actions.conftest import ADMIN_CLIENT, TENANT, prepare_database, random_uuid
from webhook.cli import main
from webhook.db.datastore import DataStore
from webhook.db.models import ElectionEvent
from webhook.provisioning.jobs import new_job
from webhook.settings import Settings
from webhook.testing.keycloak import FakeKeycloak


@pytest.fixture
def keycloak() -> Iterator[FakeKeycloak]:
    fake = FakeKeycloak()
    fake.configure_admin(*ADMIN_CLIENT)
    with fake.serve_in_thread():
        yield fake


def test_worker_once_status_and_retry(db_env: dict[str, str], keycloak: FakeKeycloak) -> None:
    """`worker --once` provisions due jobs; `status` lists them; `retry` re-queues a done or failed job."""
    realm = f"tenant-{TENANT}-event-{random_uuid()}"
    env = {
        **db_env,
        "KEYCLOAK_URL": keycloak.url,
        "KEYCLOAK_ADMIN_CLIENT_ID": ADMIN_CLIENT[0],
        "KEYCLOAK_ADMIN_CLIENT_SECRET": ADMIN_CLIENT[1],
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "error",
    }
    _add_event_job(env, realm)
    runner = CliRunner()
    result = runner.invoke(main, ["provisioning", "status", "--realm", realm, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    assert [job["status"] for job in orjson.loads(result.output)] == ["pending"]

    result = runner.invoke(main, ["worker", "--once"], env=env)
    assert result.exit_code == 0, result.output
    assert realm in keycloak.admin_realms

    result = runner.invoke(main, ["provisioning", "status"], env=env)
    assert result.exit_code == 0 and realm in result.output and "done" in result.output
    result = runner.invoke(main, ["provisioning", "retry", realm], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["provisioning", "status", "--status", "pending", "--format", "json"], env=env)
    assert [job["realm"] for job in orjson.loads(result.output)] == [realm]
    assert runner.invoke(main, ["provisioning", "retry", "tenant-nope"], env=env).exit_code == 1
    assert runner.invoke(main, ["provisioning", "status", "--realm", "tenant-nope"], env=env).exit_code == 1


def _add_event_job(env: dict[str, str], realm: str) -> None:
    """A registered tenant, an event of it and the event realm's pending job (as the action writes them)."""

    async def add() -> None:
        await prepare_database(env, {TENANT: "tenant-a"})
        store = DataStore.from_settings(Settings.from_environ(env, require_keycloak=False))
        now = dt.datetime.now(dt.UTC)
        event_id = realm.rsplit("-event-", 1)[1]
        try:
            async with store.transaction() as session:
                session.add(ElectionEvent(id=event_id, tenant_id=TENANT, name="e", encryption_protocol="RSA256"))
                await session.flush()
                session.add(
                    new_job(
                        kind="event", realm=realm, tenant_id=TENANT, event_id=event_id, request_sha256="0" * 64, now=now
                    )
                )
        finally:
            await store.dispose()

    asyncio.run(add())


def test_worker_needs_admin_credentials(db_env: dict[str, str]) -> None:
    """`webhook worker` without the admin client exits 2 naming the variables."""
    result = CliRunner().invoke(main, ["worker", "--once"], env={**db_env, "KEYCLOAK_URL": "http://127.0.0.1:1"})
    assert result.exit_code == 2
    assert "KEYCLOAK_ADMIN_CLIENT_ID" in result.output


def test_render_prints_the_realm() -> None:
    """`provisioning render` prints the realm the worker would create, with the configured portal URLs."""
    event = random_uuid()
    result = CliRunner().invoke(
        main,
        ["provisioning", "render", "--tenant", TENANT.upper(), "--event", event],
        env={"VOTING_PORTAL_URL": "https://vote.example.org"},
    )
    assert result.exit_code == 0, result.output
    realm = orjson.loads(result.output)
    assert realm["realm"] == f"tenant-{TENANT}-event-{event}"
    assert {c["clientId"]: c.get("rootUrl") for c in realm["clients"]}["voting-portal"] == "https://vote.example.org"
    bad = CliRunner().invoke(main, ["provisioning", "render", "--tenant", "x"])
    assert bad.exit_code == 2
