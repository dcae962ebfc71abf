"""One contract, two servers: every admin call the API-key service makes (`webhook/provisioning/apikeys.py`
through `KeycloakAdmin`, i.e. python-keycloak), and the key's client-credentials grant, answer the same
on the fake Keycloak (``keycloak=fake``, fast suite) and on the real Keycloak 26 (``keycloak=real``).

The scenario records what the service relies on: create (an id; a taken clientId answers None), list
(the key is marked and reads back its roles), secret, service account, the grant's token (sub = the
service account, no sid, the mapped Hasura and api_key claims, no realm roles or account audience with
full scope off), regenerate (the old secret refused, the new one works), delete (the grant then refused,
the service account and a second delete 404).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from webhook.config import Secret
from webhook.provisioning.apikeyclient import ApiKeySpec, client_representation, is_api_key, key_info
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin, KeycloakAdminError
from webhook.testing.keycloak import FakeKeycloak
from webhook.testing.realkeycloak import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, RealKeycloak

pytestmark = pytest.mark.anyio
ROLES = ("election-event-read", "tenant-read")
HASURA = "https://hasura.io/jwt/claims"


@dataclass
class Server:
    """A Keycloak (fake or real) with a fresh tenant realm, and our admin client on it."""

    url: str
    realm: str
    tenant_id: str
    admin: KeycloakAdmin
    client: httpx.AsyncClient

    async def grant(self, client_id: str, secret: str) -> httpx.Response:
        return await self.client.post(
            f"{self.url}/realms/{self.realm}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        )


def _credentials(url: str) -> AdminCredentials:
    return AdminCredentials(url, "master", ADMIN_CLIENT_ID, Secret(ADMIN_CLIENT_SECRET))


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.keycloak)], ids=lambda p: f"keycloak={p}")
async def server(request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    tenant_id = str(uuid.uuid4())
    realm = f"tenant-{tenant_id}"
    async with httpx.AsyncClient(timeout=60) as client:
        if request.param == "fake":
            async with FakeKeycloak.start() as fake:
                fake.configure_admin(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, admin=True)
                fake.admin_api.import_realm({"realm": realm, "enabled": True})
                yield Server(fake.url, realm, tenant_id, KeycloakAdmin(client, _credentials(fake.url)), client)
        else:
            real: RealKeycloak = request.getfixturevalue("real_keycloak")
            with real.admin() as bootstrap:
                bootstrap.post("", json={"realm": realm, "enabled": True}).raise_for_status()
            try:
                yield Server(real.url, realm, tenant_id, KeycloakAdmin(client, _credentials(real.url)), client)
            finally:
                with real.admin() as bootstrap:
                    bootstrap.delete(f"/{realm}")


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded


async def _failure(call: Callable[[], Awaitable[object]]) -> str:
    try:
        await call()
    except KeycloakAdminError as exc:
        return str(exc).rsplit(": ", 1)[-1]
    return "ok"


def _error(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, str(answer.json().get("error"))


async def test_the_api_key_admin_calls_and_grant_answer_alike(server: Server) -> None:
    """create/list/secret/service account/grant/regenerate/delete: the answers the API-key service relies on."""
    admin, realm, name = server.admin, server.realm, f"key-{uuid.uuid4().hex[:10]}"
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    spec = ApiKeySpec(name, server.tenant_id, ROLES, expires, "contract-test", dt.datetime.now(dt.UTC))
    representation = client_representation(spec)

    client_uuid = await admin.create_client(realm, representation)
    assert isinstance(client_uuid, str) and client_uuid
    assert await admin.create_client(realm, representation) is None  # 409: the clientId is taken
    (listed,) = [c for c in await admin.clients(realm) if c.get("clientId") == name]
    assert listed["id"] == client_uuid and is_api_key(listed)
    assert key_info(listed).roles == ROLES and key_info(listed).expires_at == expires
    assert listed["serviceAccountsEnabled"] is True and listed["fullScopeAllowed"] is False
    secret = await admin.client_secret(realm, client_uuid)
    account = (await admin.service_account(realm, client_uuid))["id"]

    granted = await server.grant(name, secret)
    assert granted.status_code == 200, granted.text
    assert granted.json()["token_type"] == "Bearer" and "refresh_token" not in granted.json()
    claims = _claims(granted.json()["access_token"])
    assert claims["sub"] == account and "sid" not in claims and "session_state" not in claims
    assert (claims["azp"], claims["typ"], set(claims["scope"].split())) == (name, "Bearer", {"profile", "email"})
    assert claims[HASURA] == {
        "x-hasura-tenant-id": server.tenant_id,
        "x-hasura-default-role": ROLES[0],
        "x-hasura-allowed-roles": list(ROLES),
        "x-hasura-user-id": account,
    }
    assert claims["api_key"] == {"name": name, "exp": int(expires.timestamp())}
    assert "realm_access" not in claims and "resource_access" not in claims and "aud" not in claims
    assert isinstance(claims["iat"], int) and claims["exp"] - claims["iat"] == 300

    fresh = await admin.regenerate_secret(realm, client_uuid)
    assert fresh != secret
    assert _error(await server.grant(name, secret)) == (401, "unauthorized_client")
    assert (await server.grant(name, fresh)).status_code == 200

    await admin.delete_client(realm, client_uuid)
    assert _error(await server.grant(name, fresh)) == (401, "invalid_client")
    assert [c for c in await admin.clients(realm) if c.get("clientId") == name] == []
    assert await _failure(lambda: admin.service_account(realm, client_uuid)) == "HTTP 404"
    assert await _failure(lambda: admin.delete_client(realm, client_uuid)) == "HTTP 404"
