"""Realm provisioning against the real Keycloak 26: the README's admin client, reconcile, check, retry, /jwks."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from webhook.auth.jwkspublish import PublishedRealms
from webhook.auth.jwksview import union_jwks
from webhook.cli import main
from webhook.db.datastore import DataStore
from webhook.db.engine import migrate
from webhook.db.models import ElectionEvent, Tenant
from webhook.observability.logs import get_logger
from webhook.provisioning.jobs import job_for_realm, new_job
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin
from webhook.provisioning.templates import PortalUrls, hasura_claims
from webhook.provisioning.worker import ProvisioningWorker, WorkerPolicy
from webhook.settings import Settings
from webhook.testing.adminmodel import GRANT_BYTES
from webhook.testing.adminsetup import client_token, create_admin_client
from webhook.testing.realkeycloak import RealKeycloak
from webhook.wiring import Dependencies, build_runtime

pytestmark = pytest.mark.keycloak


def _id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def admin_client(real_keycloak: RealKeycloak) -> tuple[str, str]:
    """A fresh service admin client, set up exactly as README "Admin client" says."""
    client_id, secret = f"webhook-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex}"
    create_admin_client(real_keycloak, client_id, secret)
    return client_id, secret


@pytest.fixture
def env(tmp_path: Path, real_keycloak: RealKeycloak, admin_client: tuple[str, str]) -> dict[str, str]:
    """The CLI's environment: a SQLite database in tmp_path, the real Keycloak, the README's admin client."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'prov.sqlite3'}",
        "DATABASE_AUTO_MIGRATE": "false",
        "KEYCLOAK_URL": real_keycloak.url,
        "KEYCLOAK_ADMIN_CLIENT_ID": admin_client[0],
        "KEYCLOAK_ADMIN_CLIENT_SECRET": admin_client[1],
        "LOG_FORMAT": "console",
        "LOG_LEVEL": "error",
    }


def add_jobs(env: dict[str, str], tenant: str, events: list[str]) -> list[str]:
    """A tenant, its events and their pending jobs in the database, as the actions write them; realm names."""
    realms = [f"tenant-{tenant}"] + [f"tenant-{tenant}-event-{e}" for e in events]

    async def add() -> None:
        store = DataStore.from_settings(Settings.from_environ(env, require_keycloak=False))
        now = dt.datetime.now(dt.UTC)
        try:
            await migrate(store.engine, schema=store.schema)
            async with store.transaction() as session:
                session.add(Tenant(id=tenant, slug=f"t-{tenant[:8]}", created_at=now, updated_at=now, is_active=True))
                session.add(new_job(kind="tenant", realm=realms[0], tenant_id=tenant, event_id=None,
                                    request_sha256="0" * 64, now=now))  # fmt: skip
                await session.flush()
                for event, realm in zip(events, realms[1:], strict=True):
                    session.add(ElectionEvent(id=event, tenant_id=tenant, name="e", encryption_protocol="RSA256"))
                    await session.flush()
                    session.add(new_job(kind="event", realm=realm, tenant_id=tenant, event_id=event,
                                        request_sha256="0" * 64, now=now))  # fmt: skip
        finally:
            await store.dispose()

    asyncio.run(add())
    return realms


def status(env: dict[str, str], realm: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["provisioning", "status", "--realm", realm, "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = orjson.loads(result.output)
    return rows[0]


def run(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env=env)


def api_key_token(server: RealKeycloak, env: dict[str, str], realm: str) -> str:
    """A client-credentials token of the realm's api-key-client, its secret read by the operator command."""
    secret = run(env, "provisioning", "secret", realm)
    assert secret.exit_code == 0, secret.output
    return client_token(server, "api-key-client", secret.output.strip(), realm)


async def verify(server: RealKeycloak, token: str) -> Any:
    settings = Settings.from_environ({"KEYCLOAK_URL": server.url})
    async with httpx.AsyncClient() as client:
        runtime = build_runtime(settings, client, Dependencies(http_client=client))
        try:
            return await runtime.verifier.verify(token)
        finally:
            await runtime.cache.close()


def bootstrap(server: RealKeycloak) -> httpx.Client:
    return server.admin()


def test_fresh_tenant_and_event_are_provisioned_and_their_tokens_open_sessions(
    real_keycloak: RealKeycloak, env: dict[str, str]
) -> None:
    """With the README's least-privilege client, a new tenant and event realm end `done`; their tokens pass the hook."""
    tenant, event = _id(), _id()
    tenant_realm, event_realm = add_jobs(env, tenant, [event])
    result = run(env, "worker", "--once")
    assert result.exit_code == 0, result.output
    for realm in (tenant_realm, event_realm):
        job = status(env, realm)
        assert (job["status"], job["attempts"], job["last_error"]) == ("done", 1, None)
    assert run(env, "provisioning", "check", "--all").exit_code == 0
    identity = asyncio.run(verify(real_keycloak, api_key_token(real_keycloak, env, event_realm)))
    assert (identity.realm.name, identity.tenant_id, identity.event_id) == (event_realm, tenant, event)
    assert identity.default_role == "admin-user" and "admin-user" in identity.allowed_roles
    identity = asyncio.run(verify(real_keycloak, api_key_token(real_keycloak, env, tenant_realm)))
    assert (identity.realm.name, identity.tenant_id) == (tenant_realm, tenant)


def test_hand_deleted_mappers_are_reported_by_check_and_repaired_by_retry(
    real_keycloak: RealKeycloak, env: dict[str, str]
) -> None:
    """Mappers deleted by hand: `check` names them (exit 1), `retry` + worker re-adds them, `check` is clean."""
    tenant_realm, event_realm = add_jobs(env, _id(), [_id()])
    assert run(env, "worker", "--once").exit_code == 0
    with bootstrap(real_keycloak) as admin:
        client = admin.get(f"/{event_realm}/clients", params={"clientId": "voting-portal"}).json()[0]
        for mapper in client["protocolMappers"]:
            admin.delete(f"/{event_realm}/clients/{client['id']}/protocol-mappers/models/{mapper['id']}")
    checked = run(env, "provisioning", "check", "--realm", event_realm, "--realm", tenant_realm)
    assert checked.exit_code == 1
    for claim in hasura_claims("event"):
        assert f"client voting-portal: no mapper for {claim}" in checked.output
    assert f"{tenant_realm}: ok" in checked.output
    assert run(env, "provisioning", "retry", event_realm).exit_code == 0
    assert run(env, "worker", "--once").exit_code == 0
    assert status(env, event_realm)["status"] == "done"
    assert run(env, "provisioning", "check", "--realm", event_realm).exit_code == 0


def test_operator_disabled_realm_and_its_attributes_survive_a_retry(
    real_keycloak: RealKeycloak, env: dict[str, str]
) -> None:
    """An operator disables a realm and sets an attribute of their own; a re-provisioning keeps both."""
    (tenant_realm,) = add_jobs(env, _id(), [])
    assert run(env, "worker", "--once").exit_code == 0
    with bootstrap(real_keycloak) as admin:
        live = admin.get(f"/{tenant_realm}").json()
        attributes = {**live["attributes"], "operator-note": "closed", "tenant-id": "tampered"}
        put = admin.put(f"/{tenant_realm}", json={"enabled": False, "displayName": "X", "attributes": attributes})
        assert put.status_code == 204
    assert run(env, "provisioning", "check", "--realm", tenant_realm).exit_code == 1  # displayName, tenant-id
    assert run(env, "provisioning", "retry", tenant_realm).exit_code == 0
    assert run(env, "worker", "--once").exit_code == 0
    with bootstrap(real_keycloak) as admin:
        after = admin.get(f"/{tenant_realm}").json()
    assert after["enabled"] is False
    assert after["attributes"]["operator-note"] == "closed"
    assert after["attributes"]["tenant-id"] == tenant_realm.removeprefix("tenant-")
    assert after["displayName"] == "Tenant"


def test_client_without_rights_fails_at_once_naming_the_permission(
    real_keycloak: RealKeycloak, env: dict[str, str]
) -> None:
    """No create-realm: `failed` after one attempt, naming it; a realm made by someone else: view-realm named."""
    client_id, secret = f"norights-{uuid.uuid4().hex[:8]}", "norights-secret"
    create_admin_client(real_keycloak, client_id, secret, roles=())
    weak = {**env, "KEYCLOAK_ADMIN_CLIENT_ID": client_id, "KEYCLOAK_ADMIN_CLIENT_SECRET": secret}
    (tenant_realm,) = add_jobs(weak, _id(), [])
    assert run(weak, "worker", "--once").exit_code == 1
    job = status(weak, tenant_realm)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    lacks = "HTTP 403, the admin client lacks the master realm role create-realm"
    assert job["last_error"] == f"create realm: {lacks} (realm {tenant_realm})"
    shown = run(weak, "provisioning", "status", "--realm", tenant_realm)
    assert "create-realm" in shown.output

    foreign = _id()
    with bootstrap(real_keycloak) as admin:  # e.g. the imported demo realm: made by another admin
        assert admin.post("", json={"realm": f"tenant-{foreign}", "enabled": True}).status_code == 201
    (foreign_realm,) = add_jobs(env, foreign, [])  # the failed job above is not due again
    assert run(env, "worker", "--once").exit_code == 1
    job = status(env, foreign_realm)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert job["last_error"].startswith("get realm: HTTP 403, the admin client lacks view-realm on this realm")
    assert job["last_error"].endswith(f"{foreign_realm}-realm) (realm {foreign_realm})")


def test_lightweight_admin_token_stays_flat_and_the_fake_grows_like_a_full_one(real_keycloak: RealKeycloak) -> None:
    """README setup: the token does not grow per realm created; without it, it grows about as the fake's does."""
    light, full = (f"light-{uuid.uuid4().hex[:8]}", "s1"), (f"full-{uuid.uuid4().hex[:8]}", "s2")
    create_admin_client(real_keycloak, *light)
    create_admin_client(real_keycloak, *full, lightweight=False)
    before = {c: len(client_token(real_keycloak, *c)) for c in (light, full)}

    async def create(client: tuple[str, str], count: int) -> None:
        async with httpx.AsyncClient() as http:
            admin = KeycloakAdmin(http, AdminCredentials(real_keycloak.url, "master", client[0], SecretStr(client[1])))
            for _ in range(count):
                assert await admin.create_realm({"realm": f"scratch-{uuid.uuid4().hex}", "enabled": True}) == "created"

    asyncio.run(create(light, 3))
    asyncio.run(create(full, 3))
    after = {c: len(client_token(real_keycloak, *c)) for c in (light, full)}
    assert after[light] == before[light]
    per_realm = (after[full] - before[full]) / 3
    assert 0.8 * GRANT_BYTES < per_realm < 1.25 * GRANT_BYTES


def test_a_new_events_signing_key_is_in_jwks_before_its_job_is_done(
    real_keycloak: RealKeycloak, env: dict[str, str]
) -> None:
    """The worker publishes the realm (pinned, keys loaded) before it marks the job done: /jwks has its kid then."""
    tenant_realm, event_realm = add_jobs(env, _id(), [_id()])
    settings = Settings.from_environ(env)
    seen: dict[str, tuple[str, bool]] = {}

    async def scenario() -> None:
        store = DataStore.from_settings(settings)
        async with httpx.AsyncClient() as client:
            runtime = build_runtime(settings, client, Dependencies(http_client=client))
            published = PublishedRealms(
                runtime.cache, runtime.realms, configured=(), store=store, interval=30, log=get_logger("test")
            )

            async def publish(realm: str) -> None:
                await published.add(realm)
                async with store.sessions() as session:
                    job = await job_for_realm(session, realm)
                certs = client.get(f"{real_keycloak.url}/realms/{realm}/protocol/openid-connect/certs")
                kids = {k["kid"] for k in (await certs).json()["keys"] if k.get("use") == "sig"}
                served = {k["kid"] for k in union_jwks(runtime.cache.realm_keys())["keys"]}
                seen[realm] = (job.status if job else "", bool(kids) and kids <= served)

            secret = settings.keycloak_admin_client_secret
            assert secret is not None
            admin = KeycloakAdmin(
                client, AdminCredentials(settings.keycloak_url, "master", settings.keycloak_admin_client_id, secret)
            )
            worker = ProvisioningWorker(
                store, admin, policy=WorkerPolicy(), urls=PortalUrls(), log=get_logger("test"), on_provisioned=publish
            )
            await worker.run_once()
            async with store.sessions() as session:
                job = await job_for_realm(session, event_realm)
                assert job is not None and job.status == "done"
            assert event_realm in published.names
            await runtime.cache.close()
        await store.dispose()

    asyncio.run(scenario())
    assert seen[event_realm] == ("running", True)
    assert seen[tenant_realm] == ("running", True)


def _admin_answers(url: str, token: str, foreign: str) -> list[object]:
    """Status codes (and GET shapes) of the admin calls provisioning relies on, as `token`'s client sees them."""
    own = f"tenant-{_id()}"
    with httpx.Client(base_url=f"{url}/admin/realms", headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
        created = api.post("", json={"realm": own, "enabled": True, "clients": [{"clientId": "c1"}]})
        got = api.get(f"/{own}")
        answers: list[object] = [created.status_code, got.status_code, "id" in got.json(), "clients" in got.json()]
        answers.append(api.put(f"/{own}", json={"displayName": "x", "clients": []}).status_code)
        answers.append([c["clientId"] for c in api.get(f"/{own}/clients").json()].count("c1"))
        skip = api.post(f"/{own}/partialImport", json={"ifResourceExists": "SKIP", "clients": [{"clientId": "c1"}]})
        answers += [skip.status_code, skip.json()["skipped"]]
        answers.append(api.post("", json={"realm": own}).status_code)
        answers.append(api.get(f"/tenant-{_id()}").status_code)
        seen = api.get(f"/{foreign}")
        answers += [seen.status_code, "id" in seen.json(), seen.json().get("realm") == foreign]
        answers.append(api.put(f"/{foreign}", json={}).status_code)
        answers.append(api.post(f"/{foreign}/partialImport", json={"ifResourceExists": "SKIP"}).status_code)
        answers.append(api.get(f"/{foreign}/clients").status_code)
    return answers


def test_the_fake_admin_api_answers_like_the_real_one(
    real_keycloak: RealKeycloak, admin_client: tuple[str, str]
) -> None:
    """Contract: the calls provisioning makes get the same answers from the fake as from Keycloak 26."""
    foreign = f"tenant-{_id()}"
    with bootstrap(real_keycloak) as admin:
        assert admin.post("", json={"realm": foreign, "enabled": True}).status_code == 201
    real = _admin_answers(real_keycloak.url, client_token(real_keycloak, *admin_client), foreign)

    from webhook.testing.keycloak import FakeKeycloak

    fake = FakeKeycloak()
    fake.configure_admin(*admin_client)
    fake.admin_api.import_realm({"realm": foreign, "enabled": True})
    with fake.serve_in_thread():
        token = httpx.post(
            f"{fake.url}/realms/master/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": admin_client[0], "client_secret": admin_client[1]},
        ).json()["access_token"]
        faked = _admin_answers(fake.url, token, foreign)
    assert faked == real
    assert real[:5] == [201, 200, True, False, 204]
