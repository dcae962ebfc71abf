"""Keycloak's admin REST API, as far as realm provisioning needs it, with the service's own credentials.

Rules of this module:
- Authentication is the client-credentials grant of the service's confidential admin client
  (`KEYCLOAK_ADMIN_CLIENT_ID`/`_SECRET`) against `KEYCLOAK_ADMIN_REALM`, at
  `<KEYCLOAK_URL>/realms/<admin realm>/protocol/openid-connect/token`. The token is cached until
  shortly before it expires (single-flight); an admin call answered 401 drops it and is retried once
  with a new one.
- `upsert_realm` is safe to repeat: GET the realm, PUT it if it exists, else POST it; a 409 on POST
  means someone created it meanwhile, so it is PUT instead.
- Every failure is a `KeycloakAdminError` whose message holds the operation and the HTTP status or
  transport error class, never a token, a secret or a response body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx

from webhook.config import Secret

TOKEN_MARGIN_SECONDS: Final = 30.0
MIN_TOKEN_LIFETIME: Final = 1.0


class KeycloakAdminError(Exception):
    """An admin API call failed; the message is safe to store and log."""


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """Where and as whom the service authenticates for the admin API."""

    keycloak_url: str
    realm: str
    client_id: str
    client_secret: Secret
    timeout: float = 30.0


class KeycloakAdmin:
    """The admin API client (realm get/create/update) over an injected `httpx.AsyncClient`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        credentials: AdminCredentials,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()
        self.tokens_fetched = 0

    # -- token ------------------------------------------------------------------------------------

    async def token(self) -> str:
        """A valid admin access token (cached; fetched when missing or about to expire)."""
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        async with self._token_lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            return await self._fetch_token()

    async def _fetch_token(self) -> str:
        creds = self._credentials
        url = f"{creds.keycloak_url}/realms/{quote(creds.realm, safe='')}/protocol/openid-connect/token"
        form = {
            "grant_type": "client_credentials",
            "client_id": creds.client_id,
            "client_secret": creds.client_secret.reveal(),
        }
        response = await self._send("token", "POST", url, data=form, authenticated=False)
        if response.status_code != 200:
            raise KeycloakAdminError(f"token: HTTP {response.status_code} from the admin realm's token endpoint")
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            raise KeycloakAdminError("token: the token endpoint's answer is not a token response") from None
        if type(token) is not str or not token:
            raise KeycloakAdminError("token: the token endpoint's answer is not a token response")
        margin = min(TOKEN_MARGIN_SECONDS, lifetime / 2)
        self._token = token
        self._token_expires = self._clock() + max(MIN_TOKEN_LIFETIME, lifetime - margin)
        self.tokens_fetched += 1
        return token

    def forget_token(self) -> None:
        """Drop the cached token (the next call fetches a new one)."""
        self._token = None
        self._token_expires = 0.0

    # -- HTTP -------------------------------------------------------------------------------------

    async def _send(
        self,
        what: str,
        method: str,
        url: str,
        *,
        authenticated: bool = True,
        data: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> httpx.Response:
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if authenticated:
                headers["Authorization"] = f"Bearer {await self.token()}"
            try:
                response = await self._client.request(
                    method,
                    url,
                    data=data,
                    json=json,
                    headers=headers,
                    timeout=self._credentials.timeout,
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
                raise KeycloakAdminError(f"{what}: {type(exc).__name__} calling Keycloak") from None
            if response.status_code == 401 and authenticated and attempt == 1:
                self.forget_token()  # revoked or expired early: one more try with a new token
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _realms_url(self, name: str | None = None) -> str:
        base = f"{self._credentials.keycloak_url}/admin/realms"
        return base if name is None else f"{base}/{quote(name, safe='')}"

    # -- realms -----------------------------------------------------------------------------------

    async def get_realm(self, name: str) -> dict[str, Any] | None:
        """The realm's representation, or None if Keycloak has no such realm."""
        response = await self._send("get realm", "GET", self._realms_url(name))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise KeycloakAdminError(f"get realm: HTTP {response.status_code}")
        try:
            found: dict[str, Any] = response.json()
        except ValueError:
            raise KeycloakAdminError("get realm: the answer is not JSON") from None
        return found

    async def create_realm(self, representation: Mapping[str, Any]) -> Literal["created", "exists"]:
        """POST the realm; "exists" when Keycloak answers 409 (created by someone else meanwhile)."""
        response = await self._send("create realm", "POST", self._realms_url(), json=dict(representation))
        if response.status_code == 201:
            return "created"
        if response.status_code == 409:
            return "exists"
        raise KeycloakAdminError(f"create realm: HTTP {response.status_code}")

    async def update_realm(self, name: str, representation: Mapping[str, Any]) -> None:
        """PUT the realm's representation (Keycloak updates the realm-level settings)."""
        response = await self._send("update realm", "PUT", self._realms_url(name), json=dict(representation))
        if response.status_code not in (200, 204):
            raise KeycloakAdminError(f"update realm: HTTP {response.status_code}")

    async def upsert_realm(self, representation: Mapping[str, Any]) -> Literal["created", "updated"]:
        """Create the realm, or update it if it exists: safe to repeat after any failure."""
        name = str(representation["realm"])
        if await self.get_realm(name) is None and await self.create_realm(representation) == "created":
            return "created"
        await self.update_realm(name, representation)
        return "updated"


__all__ = ["AdminCredentials", "KeycloakAdmin", "KeycloakAdminError"]
