"""Issuing, listing, rotating and revoking API keys in a tenant's realm, each operation recorded.

Rules of this module:
- A key lives in the realm `tenant-<tenant_id>` only, as the client `webhook.provisioning.apikeyclient`
  builds; only clients marked as API keys are listed, rotated or revoked (the realm's own clients and
  clients an operator made by hand are "not found").
- Every create, rotate and revoke writes one `api_key_event` row (who, tenant, key, roles, expiry,
  when) in a transaction opened *before* Keycloak is touched and committed after Keycloak answered:
  a database that is down refuses the operation before anything changes, and a Keycloak failure
  leaves no row. If the commit itself fails after a create, the new client is deleted again.
- Secrets: Keycloak generates them; they are returned to the caller once (create, rotate) and never
  stored, logged or put in a row or an error message.
- Revoking deletes the client: Keycloak deletes its service account with it, and issues no token for
  it any more. With a `revoker` (`webhook.revocation.userrevoker`; the service's revocations are on) the key's
  live tokens end too: a user revocation of the service account (`sub` of every client-credentials
  token; they carry no `sid`) is stored in the same transaction as the record, so both commit only
  after Keycloak answered, and every replica refuses the tokens within a second (`session_revoked`).
  Its cutoff is now + the clock leeway: the account is gone, no later token can exist, and a
  Keycloak clock slightly ahead of ours must not let a token issued just before the delete through.
  Without a revoker the live tokens last until their `exp` (the realm's access token lifespan).
- Rotating ends the tokens obtained with the old secret the same way (the rotation may answer a
  leaked secret): cutoff = our clock when Keycloak answered the new secret. Keycloak's `iat` is in
  whole seconds, so the answer waits until that second is over: every token fetched with the new
  secret then has a later `iat` and is never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.core.realms import tenant_realm_name
from webhook.db.datastore import DataStore
from webhook.db.models import ApiKeyEvent
from webhook.provisioning.apikeyclient import ApiKeyInfo, ApiKeySpec, client_representation, is_api_key, key_info
from webhook.provisioning.keycloakadmin import KeycloakAdmin, KeycloakAdminError
from webhook.revocation.userrevoker import UserRevoker

Source = Literal["action", "cli"]
MAX_KEYS_PER_REALM: Final = 1000


class ApiKeyError(Exception):
    """An API key operation refused; the message is safe to show (no secret, no Keycloak body)."""


class KeyExists(ApiKeyError):
    """A client with this name already exists in the realm."""


class KeyNotFound(ApiKeyError):
    """No API key of this name in the realm (or no such realm)."""


class TooManyKeys(ApiKeyError):
    """The realm already holds MAX_KEYS_PER_REALM keys."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for the operation (recorded)."""

    who: str
    source: Source
    realm: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key and its secret, handed to the caller once."""

    info: ApiKeyInfo
    realm: str
    secret: str


class ApiKeyService:
    """See the module rules."""

    def __init__(
        self,
        admin: KeycloakAdmin,
        store: DataStore,
        *,
        wall_clock: Callable[[], float],
        audiences: Iterable[str] = (),
        revoker: UserRevoker | None = None,
    ) -> None:
        self._admin = admin
        self._store = store
        self._now = wall_clock
        self._audiences = tuple(audiences)
        self._revoker = revoker

    def now(self) -> dt.datetime:
        """The injected wall clock as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self._now(), dt.UTC)

    async def _clients(self, realm: str) -> list[dict[str, Any]]:
        try:
            return await self._admin.clients(realm)
        except KeycloakAdminError as exc:
            if str(exc).endswith("HTTP 404"):
                raise KeyNotFound(f"realm {realm} does not exist") from None
            raise

    async def _find(self, realm: str, name: str) -> dict[str, Any]:
        for client in await self._clients(realm):
            if client.get("clientId") == name and is_api_key(client):
                return client
        raise KeyNotFound(f"no API key named {name!r} in this tenant")

    def _row(self, action: str, tenant_id: str, info: ApiKeyInfo, actor: Actor) -> ApiKeyEvent:
        return ApiKeyEvent(
            id=str(uuid.uuid4()),
            at=self.now(),
            action=action,
            tenant_id=tenant_id,
            realm=tenant_realm_name(tenant_id),
            key_name=info.name,
            roles=list(info.roles),
            expires_at=info.expires_at,
            actor=actor.who[:256],
            actor_realm=actor.realm,
            source=actor.source,
            request_id=actor.request_id[:256] if actor.request_id else None,
        )

    async def list(self, tenant_id: str) -> list[ApiKeyInfo]:
        """The tenant's keys, by name."""
        clients = await self._clients(tenant_realm_name(tenant_id))
        return sorted((key_info(c) for c in clients if is_api_key(c)), key=lambda k: k.name)

    async def create(
        self, tenant_id: str, name: str, roles: Sequence[str], expires_at: dt.datetime | None, actor: Actor
    ) -> IssuedKey:
        """A new key (the caller validated name, roles and expiry); `KeyExists` if the name is taken."""
        realm = tenant_realm_name(tenant_id)
        clients = await self._clients(realm)
        if any(c.get("clientId") == name for c in clients):
            raise KeyExists(f"a client named {name!r} already exists in this tenant")
        if sum(1 for c in clients if is_api_key(c)) >= MAX_KEYS_PER_REALM:
            raise TooManyKeys(f"this tenant already has {MAX_KEYS_PER_REALM} API keys")
        spec = ApiKeySpec(name, tenant_id, tuple(roles), expires_at, actor.who[:256], self.now())
        representation = client_representation(spec, self._audiences)
        info = key_info(representation)
        client_uuid: str | None = None
        try:
            async with self._store.transaction() as session:
                session.add(self._row("create", tenant_id, info, actor))
                await session.flush()  # the database takes the record before Keycloak is touched
                client_uuid = await self._admin.create_client(realm, representation)
                if client_uuid is None:
                    raise KeyExists(f"a client named {name!r} already exists in this tenant")
                secret = await self._admin.client_secret(realm, client_uuid)
        except BaseException:
            if client_uuid is not None:  # created, but not recorded (or no secret): take it back
                with contextlib.suppress(KeycloakAdminError):
                    await self._admin.delete_client(realm, client_uuid)
            raise
        return IssuedKey(info, realm, secret)

    async def rotate(self, tenant_id: str, name: str, actor: Actor) -> IssuedKey:
        """A new secret for the key; the old one stops working at once, and (with a revoker) its tokens too."""
        realm = tenant_realm_name(tenant_id)
        client = await self._find(realm, name)
        info = key_info(client)
        revoker = self._revoker
        account_id = await self._account_id(realm, str(client.get("id"))) if revoker is not None else None
        async with self._store.transaction() as session:
            session.add(self._row("rotate", tenant_id, info, actor))
            await session.flush()
            secret = await self._admin.regenerate_secret(realm, str(client.get("id")))
            revocation = None
            if revoker is not None and account_id is not None:  # the old secret's tokens: issued up to now
                revocation = revoker.revocation(realm, account_id)
                await revoker.store(session, revocation)
        if revoker is not None and revocation is not None:
            revoker.held(revocation, why="api_key_rotate")
            await asyncio.sleep(max(0.0, math.floor(revocation.before) + 1 - self._now()))  # see module rules
        return IssuedKey(info, realm, secret)

    async def _account_id(self, realm: str, client_uuid: str) -> str | None:
        account = await self._admin.service_account(realm, client_uuid)
        found = account.get("id")
        return found if isinstance(found, str) and found else None

    async def revoke(self, tenant_id: str, name: str, actor: Actor) -> ApiKeyInfo:
        """Delete the key's client (no new tokens) and end its live tokens (with a revoker: module rules)."""
        realm = tenant_realm_name(tenant_id)
        client = await self._find(realm, name)
        info = key_info(client)
        client_uuid = str(client.get("id"))
        revoker = self._revoker
        account_id = await self._account_id(realm, client_uuid) if revoker is not None else None
        revocation = None
        async with self._store.transaction() as session:
            session.add(self._row("revoke", tenant_id, info, actor))
            if revoker is not None and account_id is not None:  # every token of the account (module rules)
                revocation = revoker.revocation(realm, account_id, before=self._now() + revoker.leeway)
                await revoker.store(session, revocation)
            await session.flush()
            await self._admin.delete_client(realm, client_uuid)
        if revoker is not None and revocation is not None:
            revoker.held(revocation, why="api_key_revoke")
        return info


__all__ = [
    "MAX_KEYS_PER_REALM",
    "Actor",
    "ApiKeyError",
    "ApiKeyService",
    "IssuedKey",
    "KeyExists",
    "KeyNotFound",
    "TooManyKeys",
]
