"""One contract, two servers: the token/OIDC behaviours the fake Keycloak models, behind one interface.

``ContractServer`` is what tests/keycloak/test_contract.py drives; ``FakeServer`` answers with
``webhook.testing.keycloak.FakeKeycloak`` (tokens from ``mint``), ``RealServer`` with the real Keycloak
(tokens from its token endpoint, keys through its admin API). A realm is our tenant template holding
an administrator imported with the realm JSON and one created at run time, both in group ``admin``.

Token kinds: ``imported`` (password grant of the imported administrator: no default roles),
``runtime`` (password grant of the run-time one: default roles), ``service`` (client credentials of
``api-key-client``: its service account has only the default roles).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Protocol

import httpx

from tests.keycloak.support import PASSWORD, KeycloakAdmin, imported_admin, token_response
from webhook.provisioning.templates import load_template, render
from webhook.testing.keycloak import FakeKeycloak

TokenKind = Literal["imported", "runtime", "service"]
SECRET = "contract-api-key-secret"


def admin_group_roles() -> list[str]:
    """The realm roles of the template's ``admin`` group."""
    groups = load_template("tenant")["groups"]
    return list(next(g for g in groups if g["name"] == "admin")["realmRoles"])


def default_roles(realm: str) -> list[str]:
    return [f"default-roles-{realm}", "offline_access", "uma_authorization"]


class ContractServer(Protocol):
    url: str

    async def new_realm(self) -> str: ...

    async def token(self, realm: str, kind: TokenKind) -> str: ...

    async def active_kid(self, realm: str) -> str: ...

    async def rotate(self, realm: str) -> str: ...

    async def set_old_key(self, realm: str, state: Literal["passive", "disabled", "deleted"]) -> None: ...

    async def delete_realm(self, realm: str) -> None: ...


class FakeServer:
    """The fake: realms with generated keys, tokens minted as Keycloak would shape them."""

    def __init__(self, fake: FakeKeycloak) -> None:
        self.fake = fake
        self.url = fake.url
        self._old: dict[str, str] = {}

    async def new_realm(self) -> str:
        name = f"tenant-{uuid.uuid4()}"
        self.fake.add_realm(name)
        return name

    async def token(self, realm: str, kind: TokenKind) -> str:
        roles = {
            "imported": admin_group_roles(),
            "runtime": [*admin_group_roles(), *default_roles(realm)],
            "service": default_roles(realm),
        }[kind]
        grant: Literal["password", "client_credentials"] = "client_credentials" if kind == "service" else "password"
        return self.fake.mint(realm, roles=roles, grant=grant, azp="api-key-client")

    async def active_kid(self, realm: str) -> str:
        return self.fake.realm(realm).active_kid

    async def rotate(self, realm: str) -> str:
        fake_realm = self.fake.realm(realm)
        self._old[realm] = fake_realm.active_kid
        return fake_realm.rotate()

    async def set_old_key(self, realm: str, state: Literal["passive", "disabled", "deleted"]) -> None:
        fake_realm = self.fake.realm(realm)
        if state == "deleted":
            fake_realm.remove_key(self._old[realm])
        else:
            fake_realm.set_key_state(self._old[realm], state)

    async def delete_realm(self, realm: str) -> None:
        self.fake.remove_realm(realm)


class RealServer:
    """The real Keycloak: realms imported from our template, tokens from its token endpoint."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client
        self.admin = KeycloakAdmin(url, client)
        self._old: dict[str, str] = {}

    async def new_realm(self) -> str:
        tenant = str(uuid.uuid4())
        representation = render(load_template("tenant"), "tenant", tenant_id=tenant)
        next(c for c in representation["clients"] if c["clientId"] == "api-key-client")["secret"] = SECRET
        representation["users"] = [imported_admin("imported-admin")]
        await self.admin.import_realm(representation)
        name = str(representation["realm"])
        await self.admin.create_user(name, "runtime-admin", PASSWORD, groups=["admin"])
        return name

    async def token(self, realm: str, kind: TokenKind) -> str:
        form: dict[str, str] = {"client_id": "api-key-client", "client_secret": SECRET}
        if kind == "service":
            form["grant_type"] = "client_credentials"
        else:
            username = "imported-admin" if kind == "imported" else "runtime-admin"
            # scope=openid as the portals and the platform's tutorial ask (without it: no openid in scope)
            form |= {"grant_type": "password", "scope": "openid", "username": username, "password": PASSWORD}
        answer: dict[str, Any] = await token_response(self.client, self.url, realm, **form)
        return str(answer["access_token"])

    async def _rsa_provider(self, realm: str) -> dict[str, Any]:
        providers = [p for p in await self.admin.key_providers(realm) if p["providerId"] == "rsa-generated"]
        return max(providers, key=lambda p: int(p["config"]["priority"][0]))

    async def active_kid(self, realm: str) -> str:
        keys = await self.admin.keys(realm)
        active = [k for k in keys if k["algorithm"] == "RS256" and k["status"] == "ACTIVE"]
        return str(max(active, key=lambda k: int(k["providerPriority"]))["kid"])

    async def rotate(self, realm: str) -> str:
        old = await self._rsa_provider(realm)
        self._old[realm] = str(old["id"])
        priority = int(old["config"]["priority"][0]) + 100
        new_id = await self.admin.add_rsa_generated(realm, "rsa-rotated", priority)
        keys = await self.admin.keys(realm)
        return str(next(k["kid"] for k in keys if k["providerId"] == new_id))

    async def set_old_key(self, realm: str, state: Literal["passive", "disabled", "deleted"]) -> None:
        component = self._old[realm]
        if state == "passive":
            await self.admin.set_provider(realm, component, active="false")
        elif state == "disabled":
            await self.admin.set_provider(realm, component, enabled="false")
        else:
            await self.admin.delete_component(realm, component)

    async def delete_realm(self, realm: str) -> None:
        await self.admin.delete_realm(realm)
