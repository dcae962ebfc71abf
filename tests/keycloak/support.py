"""Support for the tests against the real Keycloak: its admin API, its token endpoint, and our hook in front of it.

- ``KeycloakAdmin``: the few admin REST calls the flows need (realm import and delete, users, groups, key
  provider components), async, authorised as the harness's bootstrap admin client.
- ``HookStack``: the webhook (``create_app``, real lifespan) served on loopback with ``KEYCLOAK_URL`` pointing
  at a Keycloak, an in-memory audit sink, its metrics, and Hasura stand-ins calling it in GET/POST mode.
- Names: every test makes its own realms (``fresh_tenant``) and users, so tests sharing the session server
  never meet.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from webhook.app import WebhookApp, create_app
from webhook.audit.record import MemorySink
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics
from webhook.provisioning.templates import PortalUrls, RealmKind, load_template, problems, render
from webhook.settings import Settings
from webhook.testing.hasura import HasuraStandIn, HasuraVerdict
from webhook.testing.realkeycloak import ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

KEY_PROVIDER = "org.keycloak.keys.KeyProvider"
Mode = Literal["GET", "POST"]


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) payload of a compact JWS: for asserting what the server put in it."""
    segment = token.split(".")[1]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded


def header_of(token: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS."""
    segment = token.split(".", maxsplit=1)[0]
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return loaded


def leaks(token: str, text: str) -> bool:
    """Whether any 20-character piece of ``token`` appears in ``text`` (the project's no-token-in-output rule)."""
    return any(token[i : i + 20] in text for i in range(len(token) - 19))


def user_representation(username: str, password: str) -> dict[str, Any]:
    """An enabled user with a verified e-mail and a permanent password (Keycloak's UserRepresentation)."""
    return {
        "username": username,
        "enabled": True,
        "email": f"{username}@example.org",
        "emailVerified": True,
        "firstName": "Test",
        "lastName": username.title(),
        "credentials": [{"type": "password", "value": password, "temporary": False}],
    }


def fresh_ids() -> tuple[str, str]:
    """A new (tenant id, event id) pair: realm names no other test uses."""
    return str(uuid.uuid4()), str(uuid.uuid4())


class KeycloakAdmin:
    """Keycloak's admin REST API as the bootstrap admin client (token renewed before it expires)."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client
        self._token = ""
        self._expires = 0.0

    async def _headers(self) -> dict[str, str]:
        if time.monotonic() > self._expires - 10:
            response = await self.client.post(
                f"{self.base_url}/realms/master/protocol/openid-connect/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": ADMIN_CLIENT_ID,
                    "client_secret": ADMIN_CLIENT_SECRET,
                },
            )
            response.raise_for_status()
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body["expires_in"])
        return {"Authorization": f"Bearer {self._token}"}

    async def call(self, method: str, path: str, *, expect: Iterable[int] = (200, 201, 204), **kwargs: Any) -> Any:
        """One admin call under ``/admin/realms``; the JSON answer (None when empty); fails on another status."""
        response = await self.client.request(
            method, f"{self.base_url}/admin/realms{path}", headers=await self._headers(), **kwargs
        )
        if response.status_code not in set(expect):
            raise AssertionError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json() if response.content and "json" in response.headers.get("content-type", "") else None

    async def import_realm(self, representation: Mapping[str, Any]) -> None:
        """``POST /admin/realms`` with a full representation (``RealmManager.importRealm``, as --import-realm)."""
        await self.call("POST", "", json=dict(representation), expect=(201,))

    async def delete_realm(self, realm: str) -> None:
        await self.call("DELETE", f"/{realm}", expect=(204,))

    async def create_user(
        self,
        realm: str,
        username: str,
        password: str,
        *,
        groups: Iterable[str] = (),
        realm_roles: Iterable[str] = (),
    ) -> str:
        """A user made at run time (so Keycloak gives it the default roles), in ``groups``; its id."""
        response = await self.client.post(
            f"{self.base_url}/admin/realms/{realm}/users",
            headers=await self._headers(),
            json=user_representation(username, password),
        )
        assert response.status_code == 201, response.text
        user_id = response.headers["location"].rsplit("/", 1)[1]
        wanted = set(groups)
        if wanted:
            found = {g["name"]: g["id"] for g in await self.call("GET", f"/{realm}/groups")}
            for name in wanted:
                await self.call("PUT", f"/{realm}/users/{user_id}/groups/{found[name]}", expect=(204,))
        roles = list(realm_roles)
        if roles:
            representations = [await self.call("GET", f"/{realm}/roles/{name}") for name in roles]
            await self.call("POST", f"/{realm}/users/{user_id}/role-mappings/realm", json=representations)
        return user_id

    async def client_uuid(self, realm: str, client_id: str) -> str:
        clients = await self.call("GET", f"/{realm}/clients", params={"clientId": client_id})
        assert len(clients) == 1, clients
        return str(clients[0]["id"])

    async def client_secret(self, realm: str, client_id: str) -> str:
        """The secret Keycloak generated for a confidential client (what an operator reads in the console)."""
        answer = await self.call("GET", f"/{realm}/clients/{await self.client_uuid(realm, client_id)}/client-secret")
        return str(answer["value"])

    async def service_account_id(self, realm: str, client_id: str) -> str:
        user = await self.call(
            "GET", f"/{realm}/clients/{await self.client_uuid(realm, client_id)}/service-account-user"
        )
        return str(user["id"])

    async def grant_realm_roles(self, realm: str, user_id: str, roles: Iterable[str]) -> None:
        representations = [await self.call("GET", f"/{realm}/roles/{name}") for name in roles]
        await self.call("POST", f"/{realm}/users/{user_id}/role-mappings/realm", json=representations)

    # ---- keys

    async def key_providers(self, realm: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.call("GET", f"/{realm}/components", params={"type": KEY_PROVIDER})
        return found

    async def keys(self, realm: str) -> list[dict[str, Any]]:
        """``GET /keys``: every key with its provider, priority and status (ACTIVE, PASSIVE, DISABLED)."""
        answer = await self.call("GET", f"/{realm}/keys")
        found: list[dict[str, Any]] = answer["keys"]
        return found

    async def add_rsa_generated(self, realm: str, name: str, priority: int) -> str:
        """A new ``rsa-generated`` key provider (RS256, 2048 bits); its component id."""
        realm_id = (await self.call("GET", f"/{realm}"))["id"]
        response = await self.client.post(
            f"{self.base_url}/admin/realms/{realm}/components",
            headers=await self._headers(),
            json={
                "name": name,
                "providerId": "rsa-generated",
                "providerType": KEY_PROVIDER,
                "parentId": realm_id,
                "config": {"priority": [str(priority)], "keySize": ["2048"], "algorithm": ["RS256"]},
            },
        )
        assert response.status_code == 201, response.text
        return response.headers["location"].rsplit("/", 1)[1]

    async def set_provider(self, realm: str, component_id: str, **config: str) -> None:
        """Change config entries of a key provider (``active="false"``: passive; ``enabled="false"``: disabled)."""
        component = await self.call("GET", f"/{realm}/components/{component_id}")
        for name, value in config.items():
            component["config"][name] = [value]
        await self.call("PUT", f"/{realm}/components/{component_id}", json=component, expect=(204,))

    async def delete_component(self, realm: str, component_id: str) -> None:
        await self.call("DELETE", f"/{realm}/components/{component_id}", expect=(204,))


async def token_response(client: httpx.AsyncClient, base_url: str, realm: str, **form: str) -> dict[str, Any]:
    """POST the realm's token endpoint; the JSON answer (fails on non-200)."""
    response = await client.post(f"{base_url}/realms/{realm}/protocol/openid-connect/token", data=form)
    assert response.status_code == 200, f"token endpoint {response.status_code}: {response.text[:300]}"
    answer: dict[str, Any] = response.json()
    return answer


def bearer(token: str, role: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if role is not None:
        headers["X-Hasura-Role"] = role
    return headers


@dataclass
class HookStack:
    """Our webhook served on loopback in front of one Keycloak (real or fake)."""

    app: WebhookApp
    url: str
    client: httpx.AsyncClient
    metrics: Metrics
    audit: MemorySink
    log: DecisionLog

    def hasura(self, mode: Mode) -> HasuraStandIn:
        return HasuraStandIn(f"{self.url}/hasura/auth", mode=mode, client=self.client)

    async def decide(self, token: str, mode: Mode = "GET", role: str | None = None) -> HasuraVerdict:
        """What Hasura concludes for a client request carrying ``token`` (and ``X-Hasura-Role``)."""
        return await self.hasura(mode).authenticate(bearer(token, role))

    def fetches(self, outcome: str = "ok") -> int:
        """JWKS fetches of the hook with this outcome so far (``webhook_jwks_fetches_total{outcome}``)."""
        return int(self.metrics.fetch[outcome]._value.get())

    def log_text(self) -> str:
        self.log.flush()
        stream = self.log._stream
        assert isinstance(stream, io.BytesIO)
        return stream.getvalue().decode()


@contextlib.asynccontextmanager
async def hook_stack(
    keycloak_url: str, workdir: Path, *, clock: Callable[[], float] = time.monotonic, **env: str
) -> AsyncIterator[HookStack]:
    """Serve the webhook with ``KEYCLOAK_URL=keycloak_url`` (issuer base the same), ``env`` and a JWKS ``clock``."""
    environ = {
        "KEYCLOAK_URL": keycloak_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'hook.sqlite3'}",
        "PROVISIONING_WORKER": "false",
        **env,
    }
    metrics, audit, log = Metrics(), MemorySink(), DecisionLog(io.BytesIO())
    app = create_app(
        Settings.from_environ(environ), Dependencies(audit=audit, metrics=metrics, decision_log=log, clock=clock)
    )

    async with serve_asgi(app, lifespan="on") as running, httpx.AsyncClient(timeout=30) as client:
        runtime = app.runtime
        assert runtime is not None
        if runtime.prefetch is not None:
            await runtime.prefetch
        yield HookStack(app, running.url, client, metrics, audit, log)


def cli_environment(keycloak_url: str, workdir: Path) -> dict[str, str]:
    """The environment the ``webhook`` CLI runs with against this Keycloak (nothing written into the checkout)."""
    return {
        "KEYCLOAK_URL": keycloak_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'cli.sqlite3'}",
        "LOG_FORMAT": "json",
    }


_FORM_ACTION = re.compile(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"')


async def browser_login(
    base_url: str, realm: str, client_id: str, *, redirect_uri: str, username: str, password: str
) -> dict[str, Any]:
    """What a portal does in the browser: authorization code + PKCE (S256) through Keycloak's login form."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    oidc = f"{base_url}/realms/{realm}/protocol/openid-connect"
    async with httpx.AsyncClient(timeout=30, follow_redirects=False) as browser:
        page = await browser.get(
            f"{oidc}/auth",
            params={
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "openid",
                "state": secrets.token_urlsafe(8),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert page.status_code == 200, page.text[:300]
        found = _FORM_ACTION.search(page.text)
        assert found is not None, "no login form"
        action = html.unescape(found.group(1))
        # Keycloak marks its login cookies Secure; a browser sends them to http://127.0.0.1, httpx does not
        cookies = "; ".join(f"{name}={value}" for name, value in page.cookies.items())
        posted = await browser.post(
            action,
            data={"username": username, "password": password, "credentialId": ""},
            headers={"Cookie": cookies},
        )
        assert posted.status_code == 302, posted.text[:300]
        location = httpx.URL(posted.headers["location"])
        assert str(location).startswith(redirect_uri), location
        code = location.params["code"]
        exchanged = await browser.post(
            f"{oidc}/token",
            data={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
        assert exchanged.status_code == 200, exchanged.text[:300]
        answer: dict[str, Any] = exchanged.json()
        return answer


# ------------------------------------------------------------------ realms made from our templates

PASSWORD = "a-long-test-password-1"


def imported_admin(username: str) -> dict[str, Any]:
    """A user representation for a realm JSON: an administrator (group ``admin``) with ``PASSWORD``."""
    return {**user_representation(username, PASSWORD), "groups": ["/admin"]}


@dataclass
class ProvisionedRealm:
    kind: RealmKind
    name: str
    tenant_id: str
    event_id: str | None
    admin_id: str
    voter_id: str
    urls: PortalUrls

    def session(self, role: str, user_id: str) -> dict[str, str]:
        expected = {"x-hasura-role": role, "x-hasura-user-id": user_id, "x-hasura-tenant-id": self.tenant_id}
        if self.event_id is not None:
            expected["x-hasura-event-id"] = self.event_id
        return expected


async def provision(admin: KeycloakAdmin, kind: RealmKind) -> ProvisionedRealm:
    """Render the template for new ids with the service's portal URLs, import it, add an admin and a voter."""
    tenant_id, event_id = fresh_ids()
    settings = Settings.from_environ({}, require_keycloak=False)
    urls = PortalUrls(voting_portal=settings.voting_portal_url, admin_portal=settings.admin_portal_url)
    representation = render(
        load_template(kind), kind, tenant_id=tenant_id, event_id=event_id if kind == "event" else None, urls=urls
    )
    assert problems(representation, kind) == []
    await admin.import_realm(representation)
    name = str(representation["realm"])
    admin_id = await admin.create_user(name, "tenant-admin", PASSWORD, groups=["admin"])
    # event realms: the voter group (and the default role) give `user`; tenant realms: the role itself
    voter_groups, voter_roles = (["voter"], []) if kind == "event" else ([], ["user"])
    voter_id = await admin.create_user(name, "voter-one", PASSWORD, groups=voter_groups, realm_roles=voter_roles)
    return ProvisionedRealm(kind, name, tenant_id, event_id if kind == "event" else None, admin_id, voter_id, urls)
