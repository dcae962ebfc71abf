"""The real stack for action tests: fake Keycloak (realm keys + admin API) and our service on loopback,
a database per test on SQLite *and* PostgreSQL, and a Hasura stand-in calling the actions.

PostgreSQL is TEST_POSTGRES_URL (default: the machine's server, database `test`); each test gets a
schema of its own, dropped afterwards. An unreachable server makes the tests error, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import pytest
from sqlalchemy import func, select

from tests.dbsupport import own_schema, postgres_url
from webhook.actions.registry import ActionRegistry
from webhook.app import WebhookApp, create_app
from webhook.audit.sink import DbAuditSink
from webhook.audit.store import TABLE as REJECTED
from webhook.db.datastore import DataStore
from webhook.db.engine import migrate
from webhook.db.models import ElectionEvent, RealmProvisioningJob, Tenant
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.provisioning.worker import JobOutcome, ProvisioningWorker
from webhook.settings import Settings
from webhook.testing.hasura import ActionVerdict, HasuraStandIn, HasuraVerdict
from webhook.testing.keycloak import FakeKeycloak, FakeRealm
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

#: The super-admin tenant of the platform's dev setup (and of seed 001's mutation).
SUPER: Final = "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
TENANT: Final = "3c1f6a2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
OTHER: Final = "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b"
SECRET: Final = "actions-secret-for-tests-0123456789"
ADMIN_CLIENT: Final = ("election-webhook", "admin-client-secret-for-tests")
WAIT_SECONDS: Final = 15.0
#: Words that must never appear in an answer to a client (internals: SQL, drivers, tracebacks).
LEAKS: Final = ("traceback", "select ", "insert ", "sqlalchemy", "asyncpg", "aiosqlite", "integrityerror", 'file "')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL: a fresh SQLite file, or the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'actions.sqlite3'}"
    return postgres_url()


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SQLite file (for tests whose subject does not depend on the database)."""
    return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'actions.sqlite3'}"


@pytest.fixture
def db_env(db_url: str) -> Iterator[dict[str, str]]:
    """DATABASE_* for this test's database (migrated by the stack, not by the service)."""
    with own_schema(db_url, "actions_test") as schema:
        yield {"DATABASE_URL": db_url, "DATABASE_SCHEMA": schema or "", "DATABASE_AUTO_MIGRATE": "false"}


@pytest.fixture
def sqlite_env(sqlite_url: str) -> dict[str, str]:
    """DATABASE_* for a SQLite database."""
    return {"DATABASE_URL": sqlite_url, "DATABASE_SCHEMA": "", "DATABASE_AUTO_MIGRATE": "false"}


class FakeClock:
    """A wall clock tests move by hand (starts at the real time: tokens are minted with it)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ActionStack:
    """One running service with its fakes; helpers call actions as Hasura would."""

    keycloak: FakeKeycloak
    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    env: dict[str, str]
    settings: Settings
    store: DataStore
    metrics: Metrics
    clock: FakeClock
    realms: dict[str, FakeRealm] = field(default_factory=dict)

    @property
    def hasura(self) -> HasuraStandIn:
        return HasuraStandIn(f"{self.url}/hasura/auth", mode="GET", client=self.client)

    @property
    def worker(self) -> ProvisioningWorker:
        runtime = self.app.runtime
        assert runtime is not None and runtime.worker is not None, "the stack runs no provisioning worker"
        return runtime.worker

    def token(self, tenant: str = TENANT, **kwargs: Any) -> str:
        """An admin-portal access token of `tenant`'s realm (the fake's 62 roles unless `roles`)."""
        return self.keycloak.mint(f"tenant-{tenant}", **kwargs)

    async def call(
        self,
        action: str,
        obj: Mapping[str, Any] | None = None,
        *,
        token: str | None = None,
        role: str = "admin-user",
        session: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        secret: str | None = SECRET,
        required: tuple[str, ...] = ("id", "realm", "provisioning"),
        raw_input: Mapping[str, Any] | None = None,
    ) -> ActionVerdict:
        """Call `action` through the Hasura stand-in; checks that no error answer leaks internals."""
        token = token if token is not None else self.token()
        client_headers = {
            "Host": "hasura.example:8080",
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
            "Origin": "http://127.0.0.1:3002",
            "Accept": "*/*",
            "content-type": "application/json",
            "X-Hasura-Role": role,
            "X-Forwarded-For": "203.0.113.7",
            **(bearer(token) if token else {}),
            **(headers or {}),
        }
        variables = dict(session) if session is not None else {"x-hasura-role": role}
        verdict = await self.hasura.call_action(
            action,
            raw_input if raw_input is not None else {"object": dict(obj or {})},
            variables,
            client_headers,
            secret=secret,
            required=required,
        )
        if verdict.outcome != "data":
            shown = verdict.body.decode("utf-8", "replace").lower()
            assert not any(word in shown for word in LEAKS), shown
        return verdict

    async def hook(self, token: str) -> HasuraVerdict:
        """The auth hook's verdict for a token (GET mode)."""
        return await self.hasura.authenticate(bearer(token))

    async def wait(self, predicate: Callable[[list[JobOutcome]], bool]) -> None:
        """Wait (bounded) until the worker's outcomes satisfy `predicate`."""
        async with asyncio.timeout(WAIT_SECONDS):
            await self.worker.wait_for(predicate)

    async def provisioned(self, realm: str) -> None:
        """Wait until the worker has provisioned `realm`."""
        await self.wait(lambda outcomes: any(o.realm == realm and o.outcome == "done" for o in outcomes))

    async def count(self, model: type[Any]) -> int:
        async with self.store.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    async def event(self, event_id: str) -> ElectionEvent | None:
        async with self.store.sessions() as session:
            return await session.get(ElectionEvent, event_id)

    async def job(self, realm: str) -> RealmProvisioningJob | None:
        async with self.store.sessions() as session:
            found: RealmProvisioningJob | None = await session.scalar(
                select(RealmProvisioningJob).where(RealmProvisioningJob.realm == realm)
            )
            return found

    async def rejections(self) -> list[dict[str, Any]]:
        """The audit table's rows, once every rejection so far is written."""
        runtime = self.app.runtime
        assert runtime is not None and isinstance(runtime.audit, DbAuditSink)
        async with asyncio.timeout(WAIT_SECONDS):
            await runtime.audit.flushed()
        async with self.store.engine.connect() as connection:
            result = await connection.execute(select(REJECTED).order_by(REJECTED.c.id))
            return [dict(row._mapping) for row in result]


async def prepare_database(env: Mapping[str, str], tenants: Mapping[str, str]) -> None:
    """Migrate the test database and register tenants (id -> slug) directly."""
    store = DataStore.from_settings(Settings.from_environ(dict(env), require_keycloak=False))
    try:
        await migrate(store.engine, schema=store.schema)
        when = dt.datetime.now(dt.UTC)
        async with store.transaction() as session:
            for tenant_id, slug in tenants.items():
                session.add(Tenant(id=tenant_id, slug=slug, created_at=when, updated_at=when, is_active=True))
    finally:
        await store.dispose()


StackFactory = Callable[..., AbstractAsyncContextManager[ActionStack]]


def stack_factory(base_env: Mapping[str, str]) -> StackFactory:
    @contextlib.asynccontextmanager
    async def factory(
        *,
        keycloak: FakeKeycloak | None = None,
        tenants: Mapping[str, str] | None = None,
        clock: FakeClock | None = None,
        prepare: bool = True,
        actions: ActionRegistry | None = None,
        **env: str,
    ) -> AsyncIterator[ActionStack]:
        async with contextlib.AsyncExitStack() as stack:
            if keycloak is None:
                keycloak = await stack.enter_async_context(FakeKeycloak.start())
                keycloak.configure_admin(*ADMIN_CLIENT)
                for tenant_id in (SUPER, TENANT, OTHER):
                    keycloak.add_realm(f"tenant-{tenant_id}")
            environ = {
                "KEYCLOAK_URL": keycloak.url,
                "ACTIONS_SECRET": SECRET,
                "SUPER_ADMIN_TENANT_ID": SUPER,
                "KEYCLOAK_ADMIN_CLIENT_ID": ADMIN_CLIENT[0],
                "KEYCLOAK_ADMIN_CLIENT_SECRET": ADMIN_CLIENT[1],
                "AUDIT_FLUSH_INTERVAL_SECONDS": "0.01",
                "AUDIT_RETRY_MAX_SECONDS": "0.05",
                "VOTING_PORTAL_URL": "https://vote.example.org",
                "ADMIN_PORTAL_URL": "https://admin.example.org",
                "LOG_LEVEL": "warning",
                **base_env,
                **env,
            }
            if prepare:
                registered = {SUPER: "super", TENANT: "tenant-a", OTHER: "tenant-b"} if tenants is None else tenants
                await prepare_database(environ, registered)
            settings = Settings.from_environ(environ)
            clock = clock or FakeClock()
            metrics = Metrics()
            deps = Dependencies(
                metrics=metrics, decision_log=DecisionLog(io.BytesIO()), wall_clock=clock, actions=actions
            )
            app = create_app(settings, deps)
            running = await stack.enter_async_context(serve_asgi(app, lifespan="on"))
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
            runtime = app.runtime
            assert runtime is not None and runtime.store is not None
            yield ActionStack(keycloak, app, running.url, client, environ, settings, runtime.store, metrics, clock)

    return factory


@pytest.fixture
def make_stack(db_env: dict[str, str]) -> StackFactory:
    """Stacks on this test's database (SQLite and PostgreSQL)."""
    return stack_factory(db_env)


@pytest.fixture
def make_sqlite_stack(sqlite_env: dict[str, str]) -> StackFactory:
    """Stacks on a SQLite database (tests whose subject is not the database)."""
    return stack_factory(sqlite_env)


@pytest.fixture
async def stack(make_stack: StackFactory) -> AsyncIterator[ActionStack]:
    async with make_stack() as running:
        yield running


@pytest.fixture
async def sqlite_stack(make_sqlite_stack: StackFactory) -> AsyncIterator[ActionStack]:
    async with make_sqlite_stack() as running:
        yield running


def random_uuid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
