"""API keys against the real Keycloak: a tenant admin issues a key through the Hasura stand-in, the
integrator's client-credentials grant gets a token, and the hook opens exactly the key's session.

One tenant realm (rendered from the service's template) with a tenant administrator is made once per
module; each test runs its own service (SQLite) whose admin client is Keycloak's bootstrap admin client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import io
import json
import re
import shlex
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.actions.conftest import prepare_database
from tests.deploy.support import README
from tests.revocation.conftest import wait_loaded
from webhook.app import Dependencies, WebhookApp, create_app
from webhook.audit.store import TABLE as REJECTED
from webhook.audit.writer import DbAuditSink
from webhook.cli import main
from webhook.config import Settings
from webhook.db.datastore import DataStore
from webhook.db.models import ApiKeyEvent
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.provisioning.templates import load_template, render
from webhook.testing.hasura import ActionVerdict, HasuraStandIn, HasuraVerdict
from webhook.testing.realkeycloak import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, RealKeycloak
from webhook.testing.server import serve_asgi

pytestmark = [pytest.mark.keycloak, pytest.mark.anyio]
SECRET: Final = "actions-secret-for-api-key-tests-0123"
ADMIN_PASSWORD: Final = "tenant-admin-password-for-tests"
SUPER: Final = "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
KEY_ROLES: Final = ["election-event-read", "tenant-read"]


@dataclass(frozen=True)
class TenantRealm:
    """A tenant realm on the real Keycloak with one administrator (group `admin`)."""

    server: RealKeycloak
    tenant_id: str
    realm: str
    admin_client_secret: str  # api-key-client's, for the administrator's password grant

    def admin_token(self) -> str:
        """The tenant administrator's access token (password grant of the realm's api-key-client)."""
        answer = self.server.token(
            self.realm,
            grant_type="password",
            client_id="api-key-client",
            client_secret=self.admin_client_secret,
            username="tenant-admin",
            password=ADMIN_PASSWORD,
        )
        return str(answer["access_token"])

    def key_token(self, client_id: str, secret: str) -> httpx.Response:
        """The integrator's client-credentials grant (the raw answer)."""
        return httpx.post(
            f"{self.server.url}/realms/{self.realm}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
            timeout=30,
        )

    def client(self, client_id: str) -> dict[str, Any] | None:
        with self.server.admin() as admin:
            found = admin.get(f"/{self.realm}/clients", params={"clientId": client_id}).json()
        return found[0] if found else None

    def service_account_id(self, client_id: str) -> str:
        client = self.client(client_id)
        assert client is not None
        with self.server.admin() as admin:
            return str(admin.get(f"/{self.realm}/clients/{client['id']}/service-account-user").json()["id"])


@pytest.fixture(scope="module")
def tenant_realm(real_keycloak: RealKeycloak) -> Iterator[TenantRealm]:
    """A fresh tenant realm from the service's template, with a tenant administrator."""
    tenant_id = str(uuid.uuid4())
    representation = render(load_template("tenant"), "tenant", tenant_id=tenant_id)
    realm = representation["realm"]
    with real_keycloak.admin() as admin:
        admin.post("", json=representation).raise_for_status()
        admin.post(
            f"/{realm}/users",
            json={
                "username": "tenant-admin",
                "email": "tenant-admin@example.org",
                "firstName": "Tenant",
                "lastName": "Admin",
                "emailVerified": True,
                "enabled": True,
                "groups": ["/admin"],
                "credentials": [{"type": "password", "value": ADMIN_PASSWORD, "temporary": False}],
            },
        ).raise_for_status()
        client = admin.get(f"/{realm}/clients", params={"clientId": "api-key-client"}).json()[0]
        secret = admin.get(f"/{realm}/clients/{client['id']}/client-secret").json()["value"]
    try:
        yield TenantRealm(real_keycloak, tenant_id, realm, secret)
    finally:
        with real_keycloak.admin() as admin:
            admin.delete(f"/{realm}")


@dataclass
class KeyStack:
    """The service on loopback, wired to the real Keycloak, and the Hasura stand-in in front of it."""

    realm: TenantRealm
    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    store: DataStore
    clock: LiveClock
    decisions: io.BytesIO
    log: DecisionLog

    def decision_lines(self) -> list[dict[str, Any]]:
        """The hook's decision log so far."""
        self.log.flush()
        return [orjson.loads(line) for line in self.decisions.getvalue().splitlines() if line.strip()]

    @property
    def hasura(self) -> HasuraStandIn:
        return HasuraStandIn(f"{self.url}/hasura/auth", mode="GET", client=self.client)

    async def call(
        self, action: str, arguments: Mapping[str, Any], *, token: str | None = None, required: tuple[str, ...] = ()
    ) -> ActionVerdict:
        """Call an action as Hasura would, for the tenant administrator."""
        token = token or self.realm.admin_token()
        return await self.hasura.call_action(
            action,
            dict(arguments),
            {"x-hasura-role": "admin-user"},
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Hasura-Role": "admin-user"},
            secret=SECRET,
            required=required,
        )

    async def hook(self, token: str, role: str | None = None) -> HasuraVerdict:
        headers = {"Authorization": f"Bearer {token}", **({"X-Hasura-Role": role} if role else {})}
        return await self.hasura.authenticate(headers)

    async def events(self) -> list[ApiKeyEvent]:
        async with self.store.sessions() as session:
            return list((await session.scalars(select(ApiKeyEvent).order_by(ApiKeyEvent.at))).all())

    async def everything_stored(self) -> str:
        """Every row of the record and the audit table, as text."""
        async with self.store.engine.connect() as connection:
            rows = [dict(r._mapping) for r in await connection.execute(select(REJECTED))]
        rows += [{c.name: getattr(e, c.name) for c in ApiKeyEvent.__table__.columns} for e in await self.events()]
        return json.dumps(rows, default=str)


class LiveClock:
    """The real wall clock plus an offset tests move forward: Keycloak's `iat` and the service's revocation
    cutoffs stay on one time line, and a test can still jump past an expiry."""

    def __init__(self) -> None:
        self.offset = 0.0

    @property
    def now(self) -> float:
        return time.time() + self.offset

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def service_env(realm: TenantRealm, tmp_path: Any) -> dict[str, str]:
    """The service's environment for this realm's Keycloak (admin client: the bootstrap one)."""
    return {
        "KEYCLOAK_URL": realm.server.url,
        "ACTIONS_SECRET": SECRET,
        "SUPER_ADMIN_TENANT_ID": SUPER,
        "KEYCLOAK_ADMIN_REALM": "master",
        "KEYCLOAK_ADMIN_CLIENT_ID": ADMIN_CLIENT_ID,
        "KEYCLOAK_ADMIN_CLIENT_SECRET": ADMIN_CLIENT_SECRET,
        "PROVISIONING_WORKER": "false",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'keys.sqlite3'}",
        "DATABASE_AUTO_MIGRATE": "false",
        "AUDIT_FLUSH_INTERVAL_SECONDS": "0.01",
        "LOG_LEVEL": "info",
        "REVOCATIONS": "true",  # revoke and rotate end the key's live tokens
    }


@contextlib.asynccontextmanager
async def key_stack(realm: TenantRealm, tmp_path: Any) -> AsyncIterator[KeyStack]:
    environ = service_env(realm, tmp_path)
    await prepare_database(environ, {})
    clock = LiveClock()
    decisions = io.BytesIO()
    log = DecisionLog(decisions)
    deps = Dependencies(metrics=Metrics(), decision_log=log, wall_clock=clock)
    app = create_app(Settings.from_environ(environ), deps)
    async with serve_asgi(app, lifespan="on") as running, httpx.AsyncClient(timeout=60) as client:
        runtime = app.runtime
        assert runtime is not None and runtime.store is not None
        await wait_loaded(client, running.url)  # fail closed until the revocations are read
        yield KeyStack(realm, app, running.url, client, runtime.store, clock, decisions, log)


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded


def _name() -> str:
    return f"key-{uuid.uuid4().hex[:10]}"


async def _create(stack: KeyStack, name: str, roles: list[str], **extra: Any) -> dict[str, Any]:
    verdict = await stack.call("createApiKey", {"name": name, "roles": roles, **extra}, required=("client_secret",))
    assert verdict.outcome == "data", verdict.body
    data: dict[str, Any] = verdict.data
    return data


async def test_an_admin_issues_a_key_and_the_integrator_gets_exactly_its_session(
    tenant_realm: TenantRealm, tmp_path: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """createApiKey through Hasura -> client-credentials token -> the hook's session is the key's roles and tenant."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        issued = await _create(stack, name, KEY_ROLES)
        secret = issued["client_secret"]
        assert issued["client_id"] == name and issued["roles"] == KEY_ROLES
        assert issued["realm"] == tenant_realm.realm and issued["tenant_id"] == tenant_realm.tenant_id
        assert (
            issued["token_url"]
            == f"{tenant_realm.server.url}/realms/{tenant_realm.realm}/protocol/openid-connect/token"
        )

        client = tenant_realm.client(name)
        assert client is not None
        assert client["publicClient"] is False and client["serviceAccountsEnabled"] is True
        assert client["standardFlowEnabled"] is False and client["directAccessGrantsEnabled"] is False
        assert client["attributes"]["election.api-key"] == "true"

        granted = tenant_realm.key_token(name, secret)
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        claims = _claims(token)
        hasura_claims = claims["https://hasura.io/jwt/claims"]
        assert hasura_claims["x-hasura-allowed-roles"] == KEY_ROLES
        assert claims["api_key"] == {"name": name}

        verdict = await stack.hook(token)
        assert verdict.outcome == "session", verdict.hook_body
        assert verdict.session is not None
        assert verdict.session["x-hasura-role"] == KEY_ROLES[0]
        assert verdict.session["x-hasura-tenant-id"] == tenant_realm.tenant_id
        assert verdict.session["x-hasura-user-id"] == tenant_realm.service_account_id(name)
        assert (await stack.hook(token, role=KEY_ROLES[1])).role == KEY_ROLES[1]
        refused = await stack.hook(token, role="admin-user")  # the administrator's role, not the key's
        assert refused.outcome != "session" and b"role_not_allowed" in refused.hook_body

        listed = await stack.call("apiKeys", {}, required=("keys",))
        assert listed.outcome == "data"
        (entry,) = [k for k in listed.data["keys"] if k["name"] == name]
        assert entry["roles"] == KEY_ROLES and entry["expires_at"] is None and "client_secret" not in entry

        (event,) = await stack.events()
        assert (event.action, event.key_name, event.roles, event.tenant_id) == (
            "create",
            name,
            KEY_ROLES,
            tenant_realm.tenant_id,
        )
        assert event.actor == _claims(stack.realm.admin_token())["sub"] and event.source == "action"

        decisions = stack.decision_lines()
        assert any(d.get("result") == "allow" and d.get("kind") == "api_key" for d in decisions), decisions
        stored = await stack.everything_stored()
    logs = capfd.readouterr()
    for text in (logs.out, logs.err, stack.decisions.getvalue().decode(), stored):
        assert secret[:20] not in text
        for start in range(0, len(token) - 20, 20):
            assert token[start : start + 20] not in text


@pytest.mark.parametrize(
    "roles",
    [["tenant-create"], ["admin"], ["superuser-the-admin-lacks"], ["tenant-read", "platform-operator"]],
    ids=["platform role", "forbidden role", "role the admin lacks", "one bad role among good ones"],
)
async def test_a_role_the_admin_may_not_give_is_refused_and_nothing_is_created(
    tenant_realm: TenantRealm, tmp_path: Any, roles: list[str]
) -> None:
    """Requesting a role outside the admin's own (or a forbidden/platform one) is `forbidden`; no client, no row."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        verdict = await stack.call("createApiKey", {"name": name, "roles": roles})
        assert verdict.code == "forbidden", verdict.body
        assert tenant_realm.client(name) is None
        assert await stack.events() == []


async def test_rotating_makes_the_old_secret_fail_at_keycloak(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """After rotateApiKey the old secret is refused by Keycloak's token endpoint and the new one works."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        old = (await _create(stack, name, KEY_ROLES))["client_secret"]
        assert tenant_realm.key_token(name, old).status_code == 200
        rotated = await stack.call("rotateApiKey", {"name": name}, required=("client_secret",))
        assert rotated.outcome == "data", rotated.body
        new = rotated.data["client_secret"]
        assert new != old and rotated.data["roles"] == KEY_ROLES
        refused = tenant_realm.key_token(name, old)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized_client"
        token = tenant_realm.key_token(name, new).json()["access_token"]
        assert (await stack.hook(token)).outcome == "session"
        assert [e.action for e in await stack.events()] == ["create", "rotate"]


async def test_rotating_ends_the_tokens_of_the_old_secret(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """A live token obtained with the old secret (cached by the hook) is session_revoked after rotateApiKey; a
    token obtained with the new secret right after the answer opens the key's session."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        old = (await _create(stack, name, KEY_ROLES))["client_secret"]
        token = tenant_realm.key_token(name, old).json()["access_token"]
        assert (await stack.hook(token)).outcome == "session"
        rotated = await stack.call("rotateApiKey", {"name": name}, required=("client_secret",))
        assert rotated.outcome == "data", rotated.body
        fresh = tenant_realm.key_token(name, rotated.data["client_secret"]).json()["access_token"]
        refused = await stack.hook(token)
        assert refused.outcome != "session" and b'"session_revoked"' in refused.hook_body
        assert (await stack.hook(fresh)).outcome == "session"


async def test_revoking_ends_the_live_token(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """revokeApiKey deletes the client (Keycloak refuses a new token) and the live token, already in the hook's
    verified-token cache, answers 401 session_revoked at once: a real service-account token has the service
    account as `sub` and no `sid`, and the by-user revocation covers it."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        secret = (await _create(stack, name, KEY_ROLES))["client_secret"]
        token = tenant_realm.key_token(name, secret).json()["access_token"]
        claims = _claims(token)
        assert claims["sub"] == tenant_realm.service_account_id(name) and "sid" not in claims
        assert (await stack.hook(token)).outcome == "session"
        assert (await stack.hook(token)).outcome == "session"  # a verified-token cache hit from here on
        revoked = await stack.call("revokeApiKey", {"name": name}, required=("revoked",))
        assert revoked.outcome == "data" and revoked.data["revoked"] is True, revoked.body
        late = await stack.hook(token)
        assert late.outcome != "session" and b'"session_revoked"' in late.hook_body, late.hook_body
        assert tenant_realm.client(name) is None
        denied = tenant_realm.key_token(name, secret)
        assert (denied.status_code, denied.json()["error"]) == (401, "invalid_client")
        again = await stack.call("revokeApiKey", {"name": name})
        assert again.code == "not-found"
        assert [e.action for e in await stack.events()] == ["create", "revoke"]


async def test_an_expired_keys_tokens_are_refused_by_the_hook(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """A key's expiry is in its tokens, Hasura's max-age ends there, and after it the hook answers api_key_expired."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        name = _name()
        expires = dt.datetime.fromtimestamp(stack.clock.now + 120, dt.UTC).replace(microsecond=0)
        issued = await _create(stack, name, KEY_ROLES, expires_at=expires.isoformat())
        assert dt.datetime.fromisoformat(issued["expires_at"]) == expires
        token = tenant_realm.key_token(name, issued["client_secret"]).json()["access_token"]
        assert _claims(token)["api_key"] == {"name": name, "exp": int(expires.timestamp())}
        fresh = await stack.hook(token)
        assert fresh.outcome == "session" and fresh.expires_in is not None and fresh.expires_in <= 120
        stack.clock.advance(121)  # the token itself (300 s) is still valid
        refused = await stack.hook(token)
        assert refused.outcome != "session" and b"api_key_expired" in refused.hook_body
        lines = [d for d in stack.decision_lines() if d.get("reason") == "api_key_expired"]
        assert lines and lines[-1]["kind"] == "api_key" and lines[-1]["azp"] == name
        runtime = stack.app.runtime
        assert runtime is not None and isinstance(runtime.audit, DbAuditSink)
        async with asyncio.timeout(30):
            await runtime.audit.flushed()
        async with stack.store.engine.connect() as connection:
            audited = [dict(r._mapping) for r in await connection.execute(select(REJECTED))]
        assert [(r["reason"], r["kind"], r["azp"]) for r in audited] == [("api_key_expired", "api_key", name)]


def _integrator_example() -> str:
    """The README's integrator example (the sh block after 'integrator example')."""
    text = README.read_text()
    start = text.index("# integrator example")
    return text[start : text.index("```", start)]


def _graphql_stand_in(hook_url: str, client: httpx.AsyncClient) -> Starlette:
    """A GraphQL endpoint that authenticates like Hasura (webhook mode) and answers the session it got."""
    hasura = HasuraStandIn(hook_url, mode="GET", client=client)

    async def graphql(request: Request) -> JSONResponse:
        verdict = await hasura.authenticate(list(request.headers.items()), await request.json())
        if verdict.outcome != "session" or verdict.session is None:
            return JSONResponse({"errors": [{"message": verdict.error, "extensions": {"code": "access-denied"}}]})
        return JSONResponse({"data": {"tenant": [{"id": verdict.session["x-hasura-tenant-id"]}]}})

    return Starlette(routes=[Route("/v1/graphql", graphql, methods=["POST"])])


async def test_the_readme_integrator_example_runs_as_written(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """The README's curl example, with the real token URL, key and a GraphQL endpoint substituted, gets data."""
    async with key_stack(tenant_realm, tmp_path) as stack:
        issued = await _create(stack, _name(), KEY_ROLES)
        async with serve_asgi(_graphql_stand_in(f"{stack.url}/hasura/auth", stack.client)) as graphql:
            values = {
                "TOKEN_URL": issued["token_url"],
                "GRAPHQL_URL": f"{graphql.url}/v1/graphql",
                "CLIENT_ID": issued["client_id"],
                "CLIENT_SECRET": issued["client_secret"],
            }
            script = _integrator_example()
            for variable, value in values.items():
                script, count = re.subn(rf"^{variable}=.*$", f"{variable}={shlex.quote(value)}", script, flags=re.M)
                assert count == 1, variable
            process = await asyncio.create_subprocess_exec(
                "bash", "-euo", "pipefail", "-c", script, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            async with asyncio.timeout(60):
                out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == {"data": {"tenant": [{"id": tenant_realm.tenant_id}]}}


def test_the_operator_cli_creates_lists_rotates_and_revokes(tenant_realm: TenantRealm, tmp_path: Any) -> None:
    """`webhook api-keys create|list|rotate|revoke --tenant T` do the same through the admin client, recorded as cli."""
    env = service_env(tenant_realm, tmp_path)
    asyncio.run(prepare_database(env, {}))
    name = _name()
    tenant = ["--tenant", tenant_realm.tenant_id, "--name", name]
    runner = CliRunner()
    created = runner.invoke(main, ["api-keys", "create", *tenant, "--role", "tenant-read", "--format", "json"], env=env)
    assert created.exit_code == 0, created.output
    first = json.loads(created.stdout)["client_secret"]
    assert tenant_realm.key_token(name, first).status_code == 200
    listed = runner.invoke(main, ["api-keys", "list", "--tenant", tenant_realm.tenant_id, "--format", "json"], env=env)
    assert [k["roles"] for k in json.loads(listed.stdout) if k["name"] == name] == [["tenant-read"]]
    assert first not in listed.output
    rotated = runner.invoke(main, ["api-keys", "rotate", *tenant, "--format", "json"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert tenant_realm.key_token(name, first).status_code == 401
    revoked = runner.invoke(main, ["api-keys", "revoke", *tenant], env=env)
    assert revoked.exit_code == 0 and f"{name}: revoked" in revoked.output
    assert tenant_realm.client(name) is None
    refused = runner.invoke(main, ["api-keys", "create", *tenant, "--role", "admin"], env=env)
    assert refused.exit_code == 2 and "never given to an API key: admin" in refused.output
    with sqlite3.connect(tmp_path / "keys.sqlite3") as db:
        rows = db.execute(
            "SELECT action, source, actor FROM api_key_event WHERE key_name = ? ORDER BY at", (name,)
        ).fetchall()
    assert [(action, source) for action, source, _ in rows] == [("create", "cli"), ("rotate", "cli"), ("revoke", "cli")]
    assert all(actor.startswith("cli:") for _, _, actor in rows)
