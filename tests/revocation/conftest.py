"""Back-channel logout stacks: the fake Keycloak, and one or more of our apps on loopback sharing a
database (a SQLite file, or a PostgreSQL schema of this test's own)."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import orjson
import pytest

from tests.dbsupport import own_schema, postgres_url
from webhook.app import WebhookApp, create_app
from webhook.audit.record import MemorySink
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.revocation.endpoint import PATH
from webhook.revocation.service import RevocationService
from webhook.settings import Settings
from webhook.testing.keycloak import FakeKeycloak, FakeRealm
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

TENANT = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
OTHER_TENANT = "4d2e3f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
READY_SECONDS = 20.0


@pytest.fixture(params=["sqlite", "postgresql"])
def db_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """DATABASE_* for a fresh SQLite file or a fresh PostgreSQL schema (dropped after)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'revocations.sqlite3'}"
    else:
        url = postgres_url()
    with own_schema(url, "revocation_test") as schema:
        yield {"DATABASE_URL": url, "DATABASE_SCHEMA": schema or "", "DATABASE_AUTO_MIGRATE": "true"}


@dataclass
class Replica:
    app: WebhookApp
    url: str
    audit: MemorySink
    metrics: Metrics

    @property
    def revocations(self) -> RevocationService:
        runtime = self.app.runtime
        assert runtime is not None
        assert runtime.revocations is not None
        return runtime.revocations


@dataclass
class LogoutStack:
    keycloak: FakeKeycloak
    tenant: FakeRealm
    other: FakeRealm
    replicas: list[Replica]
    client: httpx.AsyncClient

    @property
    def first(self) -> Replica:
        return self.replicas[0]

    async def hook(self, token: str, replica: Replica | None = None) -> tuple[int, dict[str, Any]]:
        target = replica or self.first
        response = await self.client.get(f"{target.url}/hasura/auth", headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.json()

    async def logout(self, logout_token: str, replica: Replica | None = None) -> tuple[int, bytes]:
        target = replica or self.first
        return await self.keycloak.send_backchannel_logout(f"{target.url}{PATH}", logout_token)


LogoutStackFactory = Callable[..., AbstractAsyncContextManager[LogoutStack]]


async def wait_loaded(client: httpx.AsyncClient, url: str) -> None:
    """Poll /readyz until the revocations are loaded (bounded)."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        body = orjson.loads((await client.get(f"{url}/readyz")).content)
        if body.get("revocations", {}).get("state") == "ok":
            return
        await _yield_briefly()
    raise AssertionError(f"revocations not loaded at {url}")


async def _yield_briefly() -> None:

    await anyio.sleep(0.02)  # polling another server's readiness: nothing to await


@pytest.fixture
def make_logout_stack(db_env: dict[str, str]) -> LogoutStackFactory:
    @contextlib.asynccontextmanager
    async def factory(*, replicas: int = 1, **env: str) -> AsyncIterator[LogoutStack]:
        async with FakeKeycloak.start() as keycloak, contextlib.AsyncExitStack() as stack:
            tenant = keycloak.add_realm(f"tenant-{TENANT}")
            other = keycloak.add_realm(f"tenant-{OTHER_TENANT}")
            environ = {
                "KEYCLOAK_URL": keycloak.url,
                "PREFETCH_REALMS": tenant.name,
                "REVOCATIONS": "true",
                **db_env,
                **env,
            }
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            running: list[Replica] = []
            for _ in range(replicas):
                audit, metrics = MemorySink(), Metrics()
                app = create_app(
                    Settings.from_environ(environ),
                    Dependencies(audit=audit, metrics=metrics, decision_log=DecisionLog(io.BytesIO())),
                )
                served = await stack.enter_async_context(serve_asgi(app, lifespan="on"))
                await wait_loaded(client, served.url)
                running.append(Replica(app, served.url, audit, metrics))
            yield LogoutStack(keycloak, tenant, other, running, client)

    return factory
