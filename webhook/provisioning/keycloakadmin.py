"""Keycloak's admin REST API, as far as realm provisioning needs it: a thin typed seam over python-keycloak.

Rules of this module:
- The calls go through python-keycloak's async `a_*` methods (`keycloak.KeycloakAdmin` on a
  `KeycloakOpenIDConnection`), on the service's injected `httpx.AsyncClient` (the library's own
  clients are replaced, so tests can route it to the fake and nothing else is ever opened).
- Authentication is the client-credentials grant of the service's confidential admin client
  (`KEYCLOAK_ADMIN_CLIENT_ID`/`_SECRET`) in `KEYCLOAK_ADMIN_REALM`; the library caches the token and,
  on a 401, fetches a new one and repeats the call once.
- Every failure is a `KeycloakAdminError` whose message names the operation, the realm and the HTTP
  status or transport error class, never a token, a secret or a response body. Two kinds are
  *permanent* (`AdminPermanentError`: the worker fails the job at once, no retries): `AdminDenied`
  (401 after a fresh token, or 403: a configuration error; the message names the permission that
  is missing and the realm) and `AdminHeaderTooLarge` (431: the admin token outgrew the server's
  header limit, see README "Admin client"). Everything else (5xx, timeouts, refused connections)
  is retryable.
- Every call that changes Keycloak is logged (`keycloak_admin.call`: operation, realm, outcome),
  the audit trail of what the service did to Keycloak; reads are not logged.
- Realm-scoped calls of the library read the target realm from the shared connection, so each one
  sets it under a lock: concurrent callers never act on each other's realm.
- No call is hand-written: every endpoint used has an `a_*` method in the library, and nothing
  measured speaks against one. Its costs, seen against 26.7.3 in the tests: the default-role calls
  list the realm's roles first to find the role's id (2 requests instead of 1), and the first token
  is fetched explicitly here so no call goes out unauthenticated. `skip_exists` on realm creation is
  not used: the library then takes a 400 for "exists" too; a 409 is caught here instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

import httpx
from keycloak import KeycloakAdmin as _LibraryAdmin
from keycloak import KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from pydantic import SecretStr

T = TypeVar("T")

#: Which admin role each operation needs in the target realm's `<realm>-realm` client (master realm).
NEEDS: Final[Mapping[str, str]] = {
    "token": "valid client credentials of the admin client",
    "create realm": "the master realm role create-realm",
    "get realm": "view-realm",
    "list realms": "view-realm",
    "update realm": "manage-realm",
    "partial import": "manage-realm",
    "delete realm": "manage-realm",
    "list clients": "view-clients",
    "update client": "manage-clients",
    "list mappers": "view-clients",
    "create mapper": "manage-clients",
    "update mapper": "manage-clients",
    "client secret": "view-clients",
    "create client": "manage-clients",
    "delete client": "manage-clients",
    "regenerate secret": "manage-clients",
    "service account": "view-clients",
    "list roles": "view-realm",
    "user roles": "view-users",
    "assign roles": "manage-users",
    "default roles": "view-realm",
    "add default roles": "manage-realm",
}


class KeycloakAdminError(Exception):
    """An admin API call failed; the message is safe to store and log. Retryable unless permanent."""


class AdminPermanentError(KeycloakAdminError):
    """A failure no retry can fix: the operator must change Keycloak's or the service's configuration."""


class AdminDenied(AdminPermanentError):
    """401 (after a fresh token) or 403: the admin client lacks a permission."""


class AdminHeaderTooLarge(AdminPermanentError):
    """431: the admin token is larger than Keycloak's request header limit."""


@dataclass(frozen=True, slots=True)
class AdminCredentials:
    """Where and as whom the service authenticates for the admin API."""

    keycloak_url: str
    realm: str
    client_id: str
    client_secret: SecretStr
    timeout: float = 30.0


def denied_message(operation: str, realm: str | None, status: int) -> str:
    """The stored message of a 401/403: operation, the permission that is missing, then the realm."""
    need = NEEDS.get(operation, "an admin role")
    where = f" (realm {realm})" if realm else ""
    if status == 401:
        return f"{operation}: HTTP 401, the admin client's credentials or token were refused ({need}){where}"
    if operation not in ("token", "create realm") and realm:
        need = f"{need} on this realm (a role of the master realm's client {realm}-realm)"
    return f"{operation}: HTTP 403, the admin client lacks {need}{where}"


def classify(operation: str, realm: str | None, status: int | None) -> KeycloakAdminError:
    """Our error for an HTTP status (None: no answer)."""
    if status in (401, 403):
        return AdminDenied(denied_message(operation, realm, status))
    if status == 431:
        return AdminHeaderTooLarge(
            f"{operation} ({realm or 'admin realm'}): HTTP 431, the admin token is larger than Keycloak's header "
            "limit; give the admin client lightweight access tokens (README: Admin client)"
        )
    where = f" ({realm})" if realm else ""
    if operation == "token":
        where = " from the admin realm's token endpoint"
        return KeycloakAdminError(f"token: {'no answer' if status is None else f'HTTP {status}'}{where}")
    if status is None:
        return KeycloakAdminError(f"{operation}{where}: no answer from Keycloak")
    return KeycloakAdminError(f"{operation}{where}: HTTP {status}")


def _status(exc: KeycloakError) -> int | None:
    code = getattr(exc, "response_code", None)
    return code if isinstance(code, int) else None


class KeycloakAdmin:
    """The admin API calls of provisioning and of the operator commands, on python-keycloak."""

    def __init__(self, client: httpx.AsyncClient, credentials: AdminCredentials, *, log: Any = None) -> None:
        self._credentials = credentials
        self._log = log
        connection = KeycloakOpenIDConnection(
            server_url=credentials.keycloak_url,
            realm_name=credentials.realm,
            user_realm_name=credentials.realm,
            client_id=credentials.client_id,
            client_secret_key=credentials.client_secret.get_secret_value(),
            timeout=int(max(1, credentials.timeout)),
            max_retries=0,
        )
        # One HTTP client for everything: ours. The library's unused ones are closed (no sockets yet).
        connection._s.close()
        connection.async_s = client
        connection.keycloak_openid.connection._s.close()
        connection.keycloak_openid.connection.async_s = client
        self._connection = connection
        self._library = _LibraryAdmin(connection=connection)
        self._realm_lock = asyncio.Lock()
        self.tokens_fetched = 0

    # -- plumbing ---------------------------------------------------------------------------------

    async def _ensure_token(self) -> None:
        if self._connection.token is None:
            try:
                await self._connection.a_get_token()
            except KeycloakConnectionError:
                raise classify("token", None, None) from None
            except KeycloakError as exc:
                raise classify("token", None, _status(exc)) from None
            self.tokens_fetched += 1

    async def _call(
        self, operation: str, realm: str | None, call: Callable[[], Awaitable[T]], *, changes: bool = False
    ) -> T:
        await self._ensure_token()
        outcome = "ok"
        try:
            async with self._realm_lock:
                self._connection.realm_name = realm or self._credentials.realm
                return await call()
        except KeycloakConnectionError:
            outcome = "no answer"
            raise classify(operation, realm, None) from None
        except KeycloakError as exc:
            outcome = f"HTTP {_status(exc)}"
            raise classify(operation, realm, _status(exc)) from None
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            raise KeycloakAdminError(f"{operation} ({realm}): {type(exc).__name__} calling Keycloak") from None
        finally:
            if changes and self._log is not None:
                self._log.info("keycloak_admin.call", operation=operation, realm=realm, outcome=outcome)

    def access_token_bytes(self) -> int:
        """Size of the cached admin access token (0 before the first call): what every admin call carries."""
        token = self._connection.token
        value = token.get("access_token") if isinstance(token, dict) else None
        return len(value) if isinstance(value, str) else 0

    def forget_token(self) -> None:
        """Drop the cached token (the next call fetches a new one)."""
        self._connection.token = None

    # -- realms -----------------------------------------------------------------------------------

    async def get_realm(self, name: str) -> dict[str, Any] | None:
        """The realm's top-level representation, or None if Keycloak has no such realm."""
        try:
            found: dict[str, Any] = await self._call("get realm", name, lambda: self._library.a_get_realm(name))
        except KeycloakAdminError as exc:
            if str(exc).endswith("HTTP 404"):
                return None
            raise
        return found

    async def list_realm_names(self) -> list[str]:
        """Names of the realms the admin client may see."""
        realms = await self._call("list realms", None, self._library.a_get_realms)
        return sorted(str(r.get("realm")) for r in realms if isinstance(r, dict))

    async def create_realm(self, representation: Mapping[str, Any]) -> Literal["created", "exists"]:
        """POST the full realm; "exists" when Keycloak answers 409 (created by someone else meanwhile)."""
        name = str(representation.get("realm"))
        payload = dict(representation)

        async def call() -> Literal["created", "exists"]:
            try:
                await self._library.a_create_realm(payload)  # not skip_exists: it would take a 400 for "exists"
            except KeycloakError as exc:
                if _status(exc) == 409:
                    return "exists"
                raise
            return "created"

        return await self._call("create realm", name, call, changes=True)

    async def update_realm(self, name: str, fields: Mapping[str, Any]) -> None:
        """PUT top-level realm fields (Keycloak ignores clients, roles, groups and users in it)."""
        payload = dict(fields)
        await self._call("update realm", name, lambda: self._library.a_update_realm(name, payload), changes=True)

    async def partial_import(self, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST .../partialImport (the caller sets `ifResourceExists`); Keycloak's summary."""
        body = dict(payload)
        result: dict[str, Any] = await self._call(
            "partial import", name, lambda: self._library.a_partial_import_realm(name, body), changes=True
        )
        return result

    async def delete_realm(self, name: str) -> None:
        """DELETE the realm (tests and the bench clean up with it)."""
        await self._call("delete realm", name, lambda: self._library.a_delete_realm(name), changes=True)

    # -- clients and mappers ----------------------------------------------------------------------

    async def clients(self, realm: str) -> list[dict[str, Any]]:
        """The realm's clients (with their protocol mappers, as Keycloak returns them)."""
        found: list[dict[str, Any]] = await self._call("list clients", realm, self._library.a_get_clients)
        return found

    async def update_client(self, realm: str, client_uuid: str, representation: Mapping[str, Any]) -> None:
        """PUT a client's fields (the client keeps its id, secret and service account)."""
        body = dict(representation)
        await self._call("update client", realm, lambda: self._library.a_update_client(client_uuid, body), changes=True)

    async def client_mappers(self, realm: str, client_uuid: str) -> list[dict[str, Any]]:
        """A client's protocol mappers."""
        found: list[dict[str, Any]] = await self._call(
            "list mappers", realm, lambda: self._library.a_get_mappers_from_client(client_uuid)
        )
        return found

    async def create_mapper(self, realm: str, client_uuid: str, mapper: Mapping[str, Any]) -> None:
        """Add a protocol mapper to a client."""
        body = dict(mapper)
        await self._call(
            "create mapper", realm, lambda: self._library.a_add_mapper_to_client(client_uuid, body), changes=True
        )

    async def update_mapper(self, realm: str, client_uuid: str, mapper_id: str, mapper: Mapping[str, Any]) -> None:
        """Replace a client's protocol mapper (same id)."""
        body = {**mapper, "id": mapper_id}
        await self._call(
            "update mapper",
            realm,
            lambda: self._library.a_update_client_mapper(client_uuid, mapper_id, body),
            changes=True,
        )

    async def client_secret(self, realm: str, client_uuid: str) -> str:
        """A confidential client's secret (for the operator command only: never logged or stored)."""
        found: dict[str, Any] = await self._call(
            "client secret", realm, lambda: self._library.a_get_client_secrets(client_uuid)
        )
        value = found.get("value")
        if not isinstance(value, str) or not value:
            raise KeycloakAdminError(f"client secret ({realm}): the client has no secret")
        return value

    async def create_client(self, realm: str, representation: Mapping[str, Any]) -> str | None:
        """POST a client (with its mappers); its id, or None when Keycloak answers 409 (the clientId exists)."""
        body = dict(representation)

        async def call() -> str | None:
            try:
                created: str = await self._library.a_create_client(body)
            except KeycloakError as exc:
                if _status(exc) == 409:
                    return None
                raise
            return created

        return await self._call("create client", realm, call, changes=True)

    async def delete_client(self, realm: str, client_uuid: str) -> None:
        """DELETE a client (Keycloak deletes its service-account user with it)."""
        await self._call("delete client", realm, lambda: self._library.a_delete_client(client_uuid), changes=True)

    async def regenerate_secret(self, realm: str, client_uuid: str) -> str:
        """A new secret for a confidential client (the old one stops working); never logged or stored."""
        found: dict[str, Any] = await self._call(
            "regenerate secret", realm, lambda: self._library.a_generate_client_secrets(client_uuid), changes=True
        )
        value = found.get("value")
        if not isinstance(value, str) or not value:
            raise KeycloakAdminError(f"regenerate secret ({realm}): Keycloak answered no secret")
        return value

    async def service_account(self, realm: str, client_uuid: str) -> dict[str, Any]:
        """The service-account user of a client."""
        found: dict[str, Any] = await self._call(
            "service account", realm, lambda: self._library.a_get_client_service_account_user(client_uuid)
        )
        return found

    # -- roles ------------------------------------------------------------------------------------

    async def realm_roles(self, realm: str) -> list[dict[str, Any]]:
        """The realm's roles (brief representations)."""
        found: list[dict[str, Any]] = await self._call(
            "list roles", realm, lambda: self._library.a_get_realm_roles(brief_representation=True)
        )
        return found

    async def user_realm_roles(self, realm: str, user_id: str) -> list[dict[str, Any]]:
        """Realm roles mapped directly to a user."""
        found: list[dict[str, Any]] = await self._call(
            "user roles", realm, lambda: self._library.a_get_realm_roles_of_user(user_id)
        )
        return found

    async def assign_realm_roles(self, realm: str, user_id: str, roles: list[dict[str, Any]]) -> None:
        """Map realm roles to a user."""
        await self._call(
            "assign roles", realm, lambda: self._library.a_assign_realm_roles(user_id, roles), changes=True
        )

    async def default_roles(self, realm: str) -> list[dict[str, Any]]:
        """The composites of the realm's default role."""
        found: list[dict[str, Any]] = await self._call("default roles", realm, self._library.a_get_realm_default_roles)
        return found

    async def add_default_roles(self, realm: str, roles: list[dict[str, Any]]) -> None:
        """Add composites to the realm's default role."""
        await self._call(
            "add default roles", realm, lambda: self._library.a_add_realm_default_roles(roles), changes=True
        )


__all__ = [
    "NEEDS",
    "AdminCredentials",
    "AdminDenied",
    "AdminHeaderTooLarge",
    "AdminPermanentError",
    "KeycloakAdmin",
    "KeycloakAdminError",
    "classify",
    "denied_message",
]
