"""The adversarial stack: the real service, its real database audit sink on SQLite, a fake Keycloak
and an attacker host, all on loopback; plus the checks every attack test makes.

Shared by tests/security (attack battery), tests/fuzz (properties over HTTP) and tests/faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar, cast

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.jwsoracle import Oracle
from webhook.app import WebhookApp, create_app
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE
from webhook.auth.httpbounds import BoundedHttpToolsProtocol
from webhook.db.engine import make_engine
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.settings import Settings
from webhook.testing.hasura import HasuraStandIn, HasuraVerdict
from webhook.testing.keycloak import AttackerHost, Behaviour, FakeKeycloak, FakeRealm
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

TENANT = "5d1a7c3e-2b4f-4e6a-9c8d-1f2e3a4b5c6d"
OTHER_TENANT = "8e7d6c5b-4a39-4281-9f0e-d1c2b3a4f5e6"
EVENT = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
Headers = Mapping[str, str] | Sequence[tuple[str, str]]
Mode = Literal["GET", "POST"]
T = TypeVar("T")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sqlite_url(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'audit.sqlite3'}"


class OffsetClock:
    """`time.monotonic` plus an offset tests move forward (to make a JWKS refetch due at once); it can
    be frozen, so that a bound stated per second of the service's clock does not grow with a slow run."""

    def __init__(self) -> None:
        self.offset = 0.0
        self._frozen_at: float | None = None

    def __call__(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        if self._frozen_at is not None:
            self._frozen_at += seconds

    def freeze(self) -> None:
        """Stop the clock where it is (until `thaw`)."""
        self._frozen_at = self()

    def thaw(self) -> None:
        """Run on from where it was frozen."""
        if self._frozen_at is not None:
            self.offset = self._frozen_at - time.monotonic()
            self._frozen_at = None


class NullStream(io.RawIOBase):
    """A binary sink for the decision log of long runs (the lines are not inspected)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


@dataclass
class AdversarialStack:
    """The service under attack and everything around it."""

    keycloak: FakeKeycloak
    attacker: AttackerHost
    app: WebhookApp
    settings: Settings
    url: str
    client: httpx.AsyncClient
    metrics: Metrics
    tenant: FakeRealm
    other: FakeRealm  # ES256 (active) and RS256 signing keys, plus the enc key
    event: FakeRealm
    engine: AsyncEngine
    clock: OffsetClock
    seen_requests: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    oracles: dict[bytes, Oracle] = field(default_factory=dict)
    oracle_checks: int = 0

    @property
    def sink(self) -> DbAuditSink:
        runtime = self.app.runtime
        assert runtime is not None
        assert isinstance(runtime.audit, DbAuditSink)
        return runtime.audit

    def hasura(self, mode: Mode) -> HasuraStandIn:
        return HasuraStandIn(f"{self.url}/hasura/auth", mode=mode, client=self.client)

    def fresh_realm(self, algorithms: Sequence[str] = ("RS256",)) -> FakeRealm:
        """A new tenant realm Keycloak knows but the service has never loaded: a token of it that
        gets past the header checks makes the service fetch its JWKS, so `fetches=0` proves an
        attack was refused before any key lookup."""
        return self.keycloak.add_realm(f"tenant-{uuid.uuid4()}", algorithms=algorithms)

    def legit_certs(self) -> set[tuple[str, str]]:
        """The only requests the service may ever make: GET of a configured realm's certs."""
        return {("GET", f"/realms/{name}/protocol/openid-connect/certs") for name in self.keycloak.realms}

    def check_oracle(self, headers: Sequence[tuple[str, str]]) -> None:
        """Every bearer token sent goes through joserfc too (tests/jwsoracle.py), against each realm's
        published JWKS: our JWS path and joserfc must agree on it."""
        for name, value in headers:
            scheme, _, token = value.strip(" \t").partition(" ")
            if name.lower() != "authorization" or scheme.lower() != "bearer" or token.count(".") != 2:
                continue
            for realm in self.keycloak.realms.values():
                jwks = realm.jwks()
                cache_key = orjson.dumps(jwks)
                oracle = self.oracles.get(cache_key)
                if oracle is None:
                    oracle = self.oracles[cache_key] = Oracle(jwks, self.settings.algorithms)
                problems = oracle.disagreements(token.strip(" \t"))
                assert not problems, (realm.name, problems)
                self.oracle_checks += 1

    def new_keycloak_requests(self) -> list[tuple[str, str]]:
        """Requests the fake Keycloak received since the last call (or the stack's start)."""
        new = self.keycloak.requests[self.seen_requests :]
        self.seen_requests = len(self.keycloak.requests)
        return new

    async def audit_row(self, request_id: str) -> dict[str, Any] | None:
        """The audit row whose latest occurrence carried this request id, once the writer flushed."""
        await self.sink.flushed()
        async with self.engine.connect() as connection:
            result = await connection.execute(select(TABLE).where(TABLE.c.request_id == request_id))
            rows = [dict(row._mapping) for row in result]
        assert len(rows) <= 1
        return rows[0] if rows else None

    async def expect_rejected(
        self,
        headers: Headers,
        reason: str,
        *,
        fetches: int = 0,
        modes: Sequence[Mode] = ("GET", "POST"),
    ) -> list[HasuraVerdict]:
        """Send `headers` as Hasura would in each mode and check the whole contract of a rejection.

        - 401 with `{"error": "unauthorized", "reason": reason}` (Hasura: access-denied), decided by
          the verifier in every mode (no token-cache hit: the battery's stacks cache no rejection);
        - the attacker host never received anything;
        - the fake Keycloak received nothing but GETs of configured realms' certs, at most `fetches`;
        - an audit row with this reason exists for the request once the writer has flushed, and it
          holds no part of the token.
        """
        self.new_keycloak_requests()
        verdicts = []
        runtime = self.app.runtime
        assert runtime is not None
        self.check_oracle(list(headers.items()) if isinstance(headers, Mapping) else list(headers))
        for mode in modes:
            request_id = f"sec-{uuid.uuid4().hex}"
            pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
            verdict = await self.hasura(mode).authenticate([*pairs, ("X-Request-Id", request_id)])
            # each mode's call must reach the verifier, not be answered by the previous one's cached rejection
            assert runtime.tokens.sizes()[1] == 0, f"a rejection was cached: the next {mode} call would not be checked"
            assert verdict.hook_status == 401, (mode, verdict.hook_status, verdict.hook_body[:300])
            assert verdict.outcome == "access-denied"
            body = orjson.loads(verdict.hook_body)
            assert body == {"error": "unauthorized", "reason": reason}, (mode, body)
            row = await self.audit_row(request_id)
            assert row is not None, f"no audit row for the {mode} request"
            assert row["reason"] == reason
            assert row["source"] == "hook"
            _assert_no_token_material(row, pairs)
            verdicts.append(verdict)
        assert self.attacker.hits == []
        new = self.new_keycloak_requests()
        assert set(new) <= self.legit_certs(), new
        assert len(new) <= fetches, new
        return verdicts

    async def expect_session(self, headers: Headers, mode: Mode = "GET") -> HasuraVerdict:
        """The positive control: the same stack opens a session for a good request."""
        self.check_oracle(list(headers.items()) if isinstance(headers, Mapping) else list(headers))
        verdict = await self.hasura(mode).authenticate(headers)
        assert verdict.hook_status == 200, verdict.hook_body[:300]
        assert verdict.outcome == "session"
        return verdict


def _assert_no_token_material(row: Mapping[str, Any], headers: Sequence[tuple[str, str]]) -> None:
    """No stored value contains a token's signature or payload segment (only its SHA-256)."""
    stored = " ".join(str(value) for value in row.values())
    for name, value in headers:
        if name.lower() != "authorization":
            continue
        for segment in value.replace("Bearer ", "").split(".")[1:]:
            if len(segment) >= 16:
                assert segment[:64] not in stored


@contextlib.asynccontextmanager
async def adversarial_stack(
    db_dir: Path,
    *,
    in_process: bool = False,
    decision_log: DecisionLog | None = None,
    keycloak_behaviour: Behaviour | None = None,
    environ: Mapping[str, str] | None = None,
    **env: str,
) -> AsyncIterator[AdversarialStack]:
    """The service (production HTTP protocol, database audit on SQLite) with its fakes around it.

    `in_process`: the client talks to the app through httpx.ASGITransport (no socket), which the
    property tests use for speed; otherwise uvicorn serves it on loopback like `webhook serve`.
    """
    async with FakeKeycloak.start() as keycloak, AttackerHost.start() as attacker:
        tenant = keycloak.add_realm(f"tenant-{TENANT}")
        other = keycloak.add_realm(f"tenant-{OTHER_TENANT}", algorithms=("ES256", "RS256"))
        event = keycloak.add_realm(f"tenant-{TENANT}-event-{EVENT}")
        if keycloak_behaviour is not None:
            keycloak.set_behaviour(keycloak_behaviour)
        environ = {
            "KEYCLOAK_URL": keycloak.url,
            "PREFETCH_REALMS": ",".join((tenant.name, other.name, event.name)),
            "ALLOWED_ALGORITHMS": "RS256,ES256",
            "DATABASE_URL": sqlite_url(db_dir),
            "AUDIT_FLUSH_INTERVAL_SECONDS": "0.01",
            **(environ or {}),
            **env,
        }
        settings = Settings.from_environ(environ)
        metrics, clock = Metrics(), OffsetClock()
        log = decision_log or DecisionLog(cast(BinaryIO, NullStream()))
        deps = Dependencies(audit=None, metrics=metrics, decision_log=log, clock=clock)
        app = create_app(settings, deps)
        engine = make_engine(settings.database_url.get_secret_value())
        try:
            async with contextlib.AsyncExitStack() as stack:
                if in_process:
                    await stack.enter_async_context(app.router.router.lifespan_context(app.router))
                    transport = httpx.ASGITransport(app=app)
                    url = "http://webhook.test"
                    client = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url=url))
                else:
                    running = await stack.enter_async_context(
                        serve_asgi(app, lifespan="on", config={"http": BoundedHttpToolsProtocol})
                    )
                    url = running.url
                    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
                    client = await stack.enter_async_context(httpx.AsyncClient(timeout=30, limits=limits))
                runtime = app.runtime
                assert runtime is not None and runtime.prefetch is not None
                await runtime.prefetch
                yield AdversarialStack(
                    keycloak, attacker, app, settings, url, client, metrics, tenant, other, event, engine, clock
                )
        finally:
            await engine.dispose()


@dataclass
class InThread:
    """An async context entered in an event loop of its own thread, for synchronous tests
    (hypothesis, schemathesis) that submit coroutines to it with `run`."""

    loop: asyncio.AbstractEventLoop
    value: Any

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def in_thread(context: contextlib.AbstractAsyncContextManager[Any]) -> Iterator[InThread]:
    """Enter `context` in a fresh event loop running in a daemon thread; exit it there at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stack loop", daemon=True)
    thread.start()
    try:
        value = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(120)
        try:
            yield InThread(loop, value)
        finally:
            asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(120)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
