"""The real stack for hook tests: fake Keycloak and an attacker host on loopback, our service served
by uvicorn on loopback, and Hasura stand-ins calling it in GET and POST mode."""

from __future__ import annotations

import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from webhook.app import WebhookApp, create_app
from webhook.audit.record import MemorySink
from webhook.core.reasons import Reason
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.settings import Settings
from webhook.testing.hasura import HasuraStandIn
from webhook.testing.keycloak import AttackerHost, FakeKeycloak, FakeRealm
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

TENANT = "9a1c2d3e-4f50-4a6b-8c7d-0e1f2a3b4c5d"
OTHER_TENANT = "1b2c3d4e-5f60-4b7c-9d8e-0f1a2b3c4d5e"
EVENT = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"


@dataclass
class Stack:
    keycloak: FakeKeycloak
    attacker: AttackerHost
    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    audit: MemorySink
    metrics: Metrics
    tenant: FakeRealm
    other: FakeRealm
    event: FakeRealm
    log: DecisionLog

    def decision_lines(self) -> list[dict[str, Any]]:
        self.log.flush()
        stream = self.log._stream
        assert isinstance(stream, io.BytesIO)
        return [orjson.loads(line) for line in stream.getvalue().splitlines()]

    def hasura(self, mode: str) -> HasuraStandIn:
        assert mode in ("GET", "POST")
        return HasuraStandIn(f"{self.url}/hasura/auth", mode=mode, client=self.client)  # type: ignore[arg-type]

    def rejections(self, reason: str) -> float:
        value = self.metrics.decision.rejected[Reason(reason)]
        return float(value)

    async def prefetched(self) -> None:
        runtime = self.app.runtime
        assert runtime is not None and runtime.prefetch is not None
        await runtime.prefetch


StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]


@pytest.fixture
def make_stack() -> StackFactory:
    @contextlib.asynccontextmanager
    async def factory(
        *, keycloak_down: bool = False, clock: Callable[[], float] = time.monotonic, **env: str
    ) -> AsyncIterator[Stack]:
        async with (
            FakeKeycloak.start() as keycloak,
            AttackerHost.start() as attacker,
        ):
            tenant = keycloak.add_realm(f"tenant-{TENANT}")
            other = keycloak.add_realm(f"tenant-{OTHER_TENANT}", algorithms=("ES256", "RS256"))
            event = keycloak.add_realm(f"tenant-{TENANT}-event-{EVENT}")
            if keycloak_down:
                keycloak.set_behaviour("down")
            environ = {"KEYCLOAK_URL": keycloak.url, "PREFETCH_REALMS": tenant.name, **env}
            settings = Settings.from_environ(environ)
            audit, metrics = MemorySink(), Metrics()
            log = DecisionLog(io.BytesIO())
            app = create_app(settings, Dependencies(audit=audit, metrics=metrics, decision_log=log, clock=clock))
            async with serve_asgi(app, lifespan="on") as running, httpx.AsyncClient() as client:
                stack = Stack(keycloak, attacker, app, running.url, client, audit, metrics, tenant, other, event, log)
                await stack.prefetched()
                yield stack

    return factory


@pytest.fixture
async def stack(make_stack: StackFactory) -> AsyncIterator[Stack]:
    async with make_stack() as running:
        yield running


def random_uuid() -> str:
    return str(uuid.uuid4())


def bearer(token: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {token}"}
