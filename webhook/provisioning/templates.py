"""Realm templates: the Keycloak realm representations new tenant and event realms are made from. Pure.

Rules of this module:
- The templates are package data (`webhook/realm_templates/{tenant,event}.json`), valid Keycloak realm
  JSON for a placeholder tenant `00000000-0000-0000-0000-000000000000` (and event `…0001`), so they can
  also be imported as they are (`webhook provisioning render` prints one for real ids).
- Rendering replaces the placeholder ids everywhere (realm name, default role, attributes, hardcoded
  claim mappers, client URLs), sets the portals' `rootUrl`s (and, with BACKCHANNEL_LOGOUT_URL, their
  back-channel logout attributes, session required) from the configuration, writes the Hasura
  claim names from `webhook.core.session` (one source of truth), and strips whatever Keycloak must generate
  itself: every `id`, client secrets, user credentials and key providers.
- `problems()` lists what makes a representation unusable for the auth hook (missing client, mapper or
  claim name, leftover secret or placeholder); the tests run it on both templates.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, Literal

from webhook.core.realms import event_realm_name, parse_realm_name, tenant_realm_name
from webhook.core.session import (
    CLAIM_ALLOWED_ROLES,
    CLAIM_DEFAULT_ROLE,
    CLAIM_EVENT,
    CLAIM_TENANT,
    CLAIM_USER,
    HASURA_NAMESPACE,
)

RealmKind = Literal["tenant", "event"]
PLACEHOLDER_TENANT: Final = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_EVENT: Final = "00000000-0000-0000-0000-000000000001"
CLIENTS: Final = ("admin-portal", "voting-portal", "api-key-client")
ACCESS_TOKEN_LIFESPAN: Final = 300
#: Realm roles the actions and the Hasura metadata rely on.
REQUIRED_ROLES: Final = frozenset({"admin-user", "user", "election-event-create", "election-event-read", "tenant-read"})
_KEY_PROVIDERS: Final = "org.keycloak.keys.KeyProvider"
_OPAQUE: Final = frozenset({"config", "attributes"})  # string maps: their keys are not representation fields


def keycloak_claim(name: str) -> str:
    """The `claim.name` of a mapper writing `name` under the Hasura namespace (dots in it escaped)."""
    return HASURA_NAMESPACE.replace(".", "\\.") + "." + name


def hasura_claims(kind: RealmKind) -> tuple[str, ...]:
    """The Hasura claims every client of a realm of this kind must map."""
    claims = (CLAIM_DEFAULT_ROLE, CLAIM_ALLOWED_ROLES, CLAIM_USER, CLAIM_TENANT)
    return (*claims, CLAIM_EVENT) if kind == "event" else claims


@dataclass(frozen=True, slots=True)
class PortalUrls:
    """Base URLs written into the portals' clients."""

    voting_portal: str = "http://127.0.0.1:3000"
    admin_portal: str = "http://127.0.0.1:3002"
    backchannel_logout: str | None = None  # BACKCHANNEL_LOGOUT_URL: where Keycloak POSTs logout tokens


#: Back-channel logout attributes of the portal clients (Keycloak's `OIDCConfigAttributes`); the URL is added
#: from `PortalUrls.backchannel_logout`, and `frontchannelLogout` is turned off (with it on, Keycloak 26 sends the
#: client no back-channel logout at all). Offline tokens are not revoked by a logout (the portals hold none).
BACKCHANNEL_ATTRIBUTES: Final = {
    "backchannel.logout.session.required": "true",
    "backchannel.logout.revoke.offline.tokens": "false",
}


def backchannel_attributes(url: str) -> dict[str, str]:
    """The client attributes that make Keycloak send back-channel logouts for every session to `url`."""
    return {"backchannel.logout.url": url, **BACKCHANNEL_ATTRIBUTES}


def load_template(kind: RealmKind) -> dict[str, Any]:
    """The packaged template of `kind` (a fresh copy)."""
    text = resources.files("webhook").joinpath("realm_templates", f"{kind}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _replace_ids(value: Any, ids: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in ids.items():
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_replace_ids(item, ids) for item in value]
    if isinstance(value, dict):
        return {_replace_ids(k, ids): _replace_ids(v, ids) for k, v in value.items()}
    return value


def _strip_generated(value: Any, *, opaque: bool = False) -> Any:
    """Drop `id` members (Keycloak generates them) except inside string maps."""
    if isinstance(value, list):
        return [_strip_generated(item) for item in value]
    if isinstance(value, dict):
        if opaque:
            return value
        return {k: _strip_generated(v, opaque=k in _OPAQUE) for k, v in value.items() if k != "id"}
    return value


def strip_secrets(realm: dict[str, Any]) -> dict[str, Any]:
    """The representation without secrets or keys: Keycloak generates new ones (modified in place)."""
    for client in realm.get("clients", []):
        client.pop("secret", None)
        client.pop("registrationAccessToken", None)
    for user in realm.get("users", []):
        user.pop("credentials", None)
    for provider in realm.get("identityProviders", []):
        provider.get("config", {}).pop("clientSecret", None)
    smtp = realm.get("smtpServer")
    if isinstance(smtp, dict):
        smtp.pop("password", None)
    components = realm.get("components")
    if isinstance(components, dict):
        components.pop(_KEY_PROVIDERS, None)
    for name in ("privateKey", "publicKey", "certificate", "codeSecret"):
        realm.pop(name, None)
    return realm


def _mappers(client: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(m.get("name")): m for m in client.get("protocolMappers", []) if isinstance(m, dict)}


def render(
    template: Mapping[str, Any],
    kind: RealmKind,
    *,
    tenant_id: str,
    event_id: str | None = None,
    urls: PortalUrls | None = None,
) -> dict[str, Any]:
    """The realm representation for this tenant (and event), ready for the admin API."""
    if (kind == "event") != (event_id is not None):
        raise ValueError("an event realm needs an event id, a tenant realm none")
    urls = urls or PortalUrls()
    ids = {PLACEHOLDER_TENANT: tenant_id}
    if event_id is not None:
        ids[PLACEHOLDER_EVENT] = event_id
    realm: dict[str, Any] = _replace_ids(_strip_generated(copy.deepcopy(dict(template))), ids)
    realm["realm"] = event_realm_name(tenant_id, event_id) if event_id is not None else tenant_realm_name(tenant_id)
    realm["enabled"] = True
    roots = {"admin-portal": urls.admin_portal, "voting-portal": urls.voting_portal}
    for client in realm.get("clients", []):
        root = roots.get(client.get("clientId", ""))
        if root is not None:
            client["rootUrl"] = root
            if urls.backchannel_logout is not None:
                client.setdefault("attributes", {}).update(backchannel_attributes(urls.backchannel_logout))
                client["frontchannelLogout"] = False  # Keycloak 26 sends no back-channel logout while it is on
        for name, mapper in _mappers(client).items():
            if name in hasura_claims(kind):
                mapper.setdefault("config", {})["claim.name"] = keycloak_claim(name)
    return strip_secrets(realm)


def render_named(name: str, urls: PortalUrls | None = None) -> tuple[RealmKind, dict[str, Any]]:
    """(kind, representation) of a `tenant-<uuid>[-event-<uuid>]` realm name; ValueError for other names."""
    realm = parse_realm_name(name)
    if realm is None or realm.tenant_id is None:
        raise ValueError(f"{name!r} is not a tenant or event realm name")
    kind: RealmKind = "event" if realm.event_id is not None else "tenant"
    return kind, render(load_template(kind), kind, tenant_id=realm.tenant_id, event_id=realm.event_id, urls=urls)


def problems(realm: Mapping[str, Any], kind: RealmKind) -> list[str]:
    """What makes `realm` unfit for the auth hook (empty: fit)."""
    found: list[str] = []
    if realm.get("accessTokenLifespan") != ACCESS_TOKEN_LIFESPAN:
        found.append(f"accessTokenLifespan is not {ACCESS_TOKEN_LIFESPAN}")
    roles = {r.get("name") for r in realm.get("roles", {}).get("realm", []) if isinstance(r, dict)}
    missing_roles = sorted(REQUIRED_ROLES - roles)
    if missing_roles:
        found.append(f"realm roles missing: {', '.join(missing_roles)}")
    clients = {c.get("clientId"): c for c in realm.get("clients", []) if isinstance(c, dict)}
    for client_id in CLIENTS:
        client = clients.get(client_id)
        if client is None:
            found.append(f"client {client_id} is missing")
            continue
        if "secret" in client:
            found.append(f"client {client_id} carries a secret")
        public = client_id != "api-key-client"
        if bool(client.get("publicClient")) != public:
            found.append(f"client {client_id} must be {'public' if public else 'confidential'}")
        mappers = _mappers(client)
        for claim in hasura_claims(kind):
            mapper = mappers.get(claim)
            if mapper is None:
                found.append(f"client {client_id}: no mapper for {claim}")
            elif mapper.get("config", {}).get("claim.name") != keycloak_claim(claim):
                found.append(f"client {client_id}: mapper {claim} writes another claim")
        default = mappers.get(CLAIM_DEFAULT_ROLE, {}).get("config", {}).get("claim.value")
        if default is not None and default not in roles:
            found.append(f"client {client_id}: default role {default!r} is not a realm role")
    if not clients.get("api-key-client", {}).get("serviceAccountsEnabled"):
        found.append("client api-key-client needs a service account")
    if _KEY_PROVIDERS in realm.get("components", {}):
        found.append("key providers present (Keycloak must generate new keys)")
    return found


__all__ = [
    "BACKCHANNEL_ATTRIBUTES",
    "CLIENTS",
    "PLACEHOLDER_EVENT",
    "PLACEHOLDER_TENANT",
    "PortalUrls",
    "RealmKind",
    "backchannel_attributes",
    "hasura_claims",
    "keycloak_claim",
    "load_template",
    "problems",
    "render",
    "render_named",
    "strip_secrets",
]
