"""When a process cannot be sure it holds every revocation: a database outage (a throwaway cluster of
this test's own), a database that never answered, and the catch-up read on (re)connect."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import anyio
import httpx
import orjson
import pytest

from tests.dbsupport import own_schema, postgres_url
from tests.revocation.conftest import TENANT, wait_loaded
from tests.revocation.throwaway_pg import throwaway_cluster
from webhook.app import create_app
from webhook.audit.record import MemorySink
from webhook.core.realms import RealmPolicy
from webhook.core.session import Identity
from webhook.db.datastore import DataStore
from webhook.db.engine import make_engine, migrate
from webhook.observability.decisionlog import DecisionLog
from webhook.revocation.active import Revocation
from webhook.revocation.service import RevocationPolicy, RevocationService
from webhook.revocation.store import insert
from webhook.settings import Settings
from webhook.testing.keycloak import FakeKeycloak
from webhook.testing.serveproc import free_port
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio
REALM = f"tenant-{TENANT}"


async def _state(client: httpx.AsyncClient, url: str) -> str:
    body = orjson.loads((await client.get(f"{url}/readyz")).content)
    return str(body["revocations"]["state"])


async def _until_state(client: httpx.AsyncClient, url: str, state: str, seconds: float = 15.0) -> None:
    with anyio.fail_after(seconds):
        while await _state(client, url) != state:  # noqa: ASYNC110 - a state read over HTTP, not an event
            await anyio.sleep(0.05)


async def test_an_outage_past_the_bound_makes_the_process_uncertain_and_fail_closed_until_it_reconnects() -> None:
    """The database stops: after REVOCATION_MAX_LAG_SECONDS /readyz says uncertain and the gauge is 1, and
    (fail closed) a token issued before the outage is refused while one issued after is accepted; the
    database back, the process catches up, is certain again and the old token works."""
    with throwaway_cluster() as cluster:
        async with FakeKeycloak.start() as keycloak, httpx.AsyncClient(timeout=10) as client:
            keycloak.add_realm(REALM)
            settings = Settings.from_environ(
                {
                    "KEYCLOAK_URL": keycloak.url,
                    "PREFETCH_REALMS": REALM,
                    "REVOCATIONS": "true",
                    "DATABASE_URL": cluster.url,
                    "DATABASE_AUTO_MIGRATE": "true",
                    "REVOCATION_MAX_LAG_SECONDS": "1",
                }
            )
            app = create_app(settings, Dependencies(audit=MemorySink(), decision_log=DecisionLog(io.BytesIO())))
            async with serve_asgi(app, lifespan="on") as served:
                await wait_loaded(client, served.url)
                old = keycloak.mint(REALM, now=int(time.time()) - 10)
                hook = f"{served.url}/hasura/auth"
                assert (await client.get(hook, headers={"Authorization": f"Bearer {old}"})).status_code == 200
                await anyio.to_thread.run_sync(cluster.stop)
                await _until_state(client, served.url, "uncertain")
                assert "webhook_revocation_uncertain 1.0" in (await client.get(f"{served.url}/metrics")).text
                refused = await client.get(hook, headers={"Authorization": f"Bearer {old}"})
                assert (refused.status_code, refused.json()["reason"]) == (401, "session_revoked")
                new = keycloak.mint(REALM, now=int(time.time()) + 1)
                assert (await client.get(hook, headers={"Authorization": f"Bearer {new}"})).status_code == 200
                await anyio.to_thread.run_sync(cluster.start)
                await _until_state(client, served.url, "ok")
                assert "webhook_revocation_uncertain 0.0" in (await client.get(f"{served.url}/metrics")).text
                assert (await client.get(hook, headers={"Authorization": f"Bearer {old}"})).status_code == 200


def _identity(iat: float, sid: str = "s") -> Identity:
    realm = RealmPolicy(("http://kc",), frozenset(), "http://kc").realm_for_name(REALM)
    assert realm is not None
    return Identity(realm, "u", TENANT, None, "user", frozenset({"user"}), iat + 300, sid, "u", iat)


@pytest.mark.parametrize("fail_closed", [True, False])
async def test_before_the_first_full_read_fail_closed_refuses_every_token(closed_port: int, fail_closed: bool) -> None:
    """A database that never answers: the service stays loading; fail closed refuses every token, open
    accepts them; past the bound it reports uncertain."""
    now = [1000.0]
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/x")
    service = RevocationService(
        DataStore(engine),
        policy=RevocationPolicy(max_lag=1.0, fail_closed=fail_closed),
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/x",
        clock=lambda: now[0],
        wall_clock=time.time,
    )
    try:
        assert service.status()["state"] == "loading"
        assert service.revoked(_identity(time.time())) is fail_closed
        assert not service.uncertain()
        now[0] += 2.0
        assert service.uncertain()
    finally:
        await engine.dispose()


async def test_a_process_reads_every_revocation_committed_while_it_was_not_listening(pg_schema: str) -> None:
    """Rows committed before the service connects (a replica that was down) are held after its first
    full read, without any notification."""
    schema = pg_schema
    store = DataStore(make_engine(postgres_url(), schema=schema), schema=schema)
    try:
        await migrate(store.engine, schema=schema)
        now = time.time()
        missed = Revocation(REALM, "missed-sid", None, now, now + 600, now)
        async with store.transaction() as session:
            assert await insert(session, missed, source="operator", jti=None)
        service = RevocationService(
            store, policy=RevocationPolicy(max_lag=2.0), database_url=postgres_url(), schema=schema
        )
        async with anyio.create_task_group() as group:
            group.start_soon(service.run)
            with anyio.fail_after(10):
                await service.wait_until(bool)
            group.cancel_scope.cancel()
        assert service.revoked(_identity(now, sid="missed-sid"))
        assert not service.revoked(_identity(now, sid="other"))
    finally:
        await store.dispose()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of this test's own (dropped after)."""
    with own_schema(postgres_url(), "revocation_catchup") as schema:
        assert schema is not None
        yield schema
