"""The service Prometheus scrapes in tests/ops: served by uvicorn on loopback, with the fake Keycloak.

Two prefetched realms: `good` (Keycloak answers) and `failing` (Keycloak answers 503 from the
start). A 10 s JWKS TTL and no retry delay make the refresher try the failing realm every second;
the injected clock moves the good realm past its TTL at once when a test wants stale keys.
"""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.security.support import OffsetClock, bearer, sqlite_url
from webhook.app import WebhookApp, create_app
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.settings import Settings
from webhook.testing.keycloak import FakeKeycloak, FakeRealm, attacker_key
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

GOOD_TENANT = "3c0b7a55-1f7e-4d2a-9b41-6f0c2e8d9a17"
FAILING_TENANT = "b8e2d0c4-6a1f-4c3e-8d5b-2a9f7e1c0b36"


@dataclass
class OpsStack:
    keycloak: FakeKeycloak
    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    metrics: Metrics
    clock: OffsetClock
    good: FakeRealm
    failing: FakeRealm

    @property
    def target(self) -> str:
        """host:port for Prometheus's scrape config."""
        return self.url.removeprefix("http://")

    async def hook(self, token: str | None, role: str | None = None) -> int:
        headers = {} if token is None else bearer(token)
        if role is not None:
            headers["X-Hasura-Role"] = role
        return (await self.client.get(f"{self.url}/hasura/auth", headers=headers)).status_code

    def forged(self) -> str:
        """A token of the good realm, naming its kid, signed by a key that is not the realm's."""
        return self.keycloak.mint(self.good.name, sub=str(uuid.uuid4()), signing_key=attacker_key("RS256"))


@contextlib.asynccontextmanager
async def ops_stack(directory: Path, **env: str) -> AsyncIterator[OpsStack]:
    """The service (SQLite audit in `directory`, which must exist) and its fake Keycloak."""
    async with FakeKeycloak.start() as keycloak:
        good = keycloak.add_realm(f"tenant-{GOOD_TENANT}")
        failing = keycloak.add_realm(f"tenant-{FAILING_TENANT}")
        keycloak.set_behaviour("down", failing.name)
        environ = {
            "KEYCLOAK_URL": keycloak.url,
            "PREFETCH_REALMS": f"{good.name},{failing.name}",
            "JWKS_TTL_SECONDS": "10",
            "JWKS_RETRY_SECONDS": "0",
            "DATABASE_URL": sqlite_url(directory),
            "AUDIT_FLUSH_INTERVAL_SECONDS": "0.05",
            "LOG_LEVEL": "warning",
            **env,
        }
        settings = Settings.from_environ(environ)
        metrics, clock = Metrics(), OffsetClock()
        deps = Dependencies(metrics=metrics, clock=clock, decision_log=DecisionLog(io.BytesIO()))
        app = create_app(settings, deps)
        async with serve_asgi(app, lifespan="on") as running, httpx.AsyncClient(timeout=30) as client:
            runtime = app.runtime
            assert runtime is not None and runtime.prefetch is not None
            await runtime.prefetch
            yield OpsStack(keycloak, app, running.url, client, metrics, clock, good, failing)
