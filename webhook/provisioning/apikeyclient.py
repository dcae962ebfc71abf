"""The Keycloak client an API key is: one confidential client per key, built from our template. Pure.

Rules of this module:
- One key = one client in the tenant's realm, `clientId` = the key's name: confidential
  (client-secret), service accounts only (standard flow, implicit flow, direct grants and device flow
  off), `fullScopeAllowed` off, no redirect URIs or web origins.
- Its protocol mappers *hardcode* the Hasura claims, so no role or attribute a realm admin later gives
  the service-account user can widen the key: `x-hasura-tenant-id` (the tenant),
  `x-hasura-default-role` (the first of the key's roles), `x-hasura-allowed-roles` (the key's roles, a
  JSON array), and `x-hasura-user-id` = the service account's id (user property `id`). Plus the
  `api_key` claim (`webhook.core.apikeyclaim`: name and, when it expires, the expiry in epoch seconds) and,
  when ALLOWED_AUDIENCES is set, one audience mapper per allowed audience.
- The client's attributes mark it as an API key (`election.api-key` = `true`) and record its roles,
  expiry, creator and creation time: `is_api_key()` is how the service tells its keys from the
  realm's other clients (only marked clients can be listed, rotated or revoked).
- Key names: 3 to 63 characters, lowercase letters, digits and inner `-`; never one of the realm's
  own clients.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from webhook.core.apikeyclaim import CLAIM as KEY_CLAIM
from webhook.core.apikeyclaim import EXPIRY, NAME, NAME_RE
from webhook.core.session import CLAIM_ALLOWED_ROLES, CLAIM_DEFAULT_ROLE, CLAIM_TENANT, CLAIM_USER
from webhook.provisioning.templates import CLIENTS, keycloak_claim

MARK: Final = "election.api-key"
ROLES_ATTRIBUTE: Final = "election.api-key.roles"
EXPIRES_ATTRIBUTE: Final = "election.api-key.expires-at"
CREATED_BY_ATTRIBUTE: Final = "election.api-key.created-by"
CREATED_AT_ATTRIBUTE: Final = "election.api-key.created-at"
#: Client ids Keycloak creates in every realm, and the template's own: never a key's name.
RESERVED: Final = frozenset(
    {*CLIENTS, "account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console"}
)
MAX_ROLES: Final = 50
_TOKEN_ONLY: Final = {
    "access.token.claim": "true",
    "id.token.claim": "false",
    "userinfo.token.claim": "false",
    "introspection.token.claim": "true",
}


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """What a key is made of (validated by the caller)."""

    name: str
    tenant_id: str
    roles: tuple[str, ...]
    expires_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A key as listed: read back from its client's attributes (never its secret)."""

    name: str
    roles: tuple[str, ...]
    expires_at: dt.datetime | None
    enabled: bool
    created_by: str | None
    created_at: dt.datetime | None

    def as_output(self) -> dict[str, Any]:
        """The GraphQL `ApiKey` object."""
        return {
            "name": self.name,
            "client_id": self.name,
            "roles": list(self.roles),
            "expires_at": iso(self.expires_at),
            "enabled": self.enabled,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
        }


def iso(when: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC, or None."""
    return None if when is None else when.astimezone(dt.UTC).isoformat()


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a key's name (None: it can)."""
    if not NAME_RE.fullmatch(name):
        return "3 to 63 characters: lowercase letters, digits and inner '-'"
    if name in RESERVED:
        return "the name of one of the realm's own clients"
    return None


def name_allowed(name: str) -> bool:
    """Whether `name` can be a key's name (`name_problem` finds nothing)."""
    return name_problem(name) is None


def _hardcoded(claim: str, value: str, json_type: str) -> dict[str, Any]:
    return {
        "name": claim,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-hardcoded-claim-mapper",
        "consentRequired": False,
        "config": {"claim.name": claim_path(claim), "claim.value": value, "jsonType.label": json_type, **_TOKEN_ONLY},
    }


def claim_path(claim: str) -> str:
    """Keycloak's `claim.name` of a mapper: a Hasura claim under its namespace, or our `api_key.*`."""
    return claim if claim.startswith(f"{KEY_CLAIM}.") else keycloak_claim(claim)


def mappers(spec: ApiKeySpec, audiences: Iterable[str]) -> list[dict[str, Any]]:
    """The key client's protocol mappers (see the module rules)."""
    found = [
        _hardcoded(CLAIM_TENANT, spec.tenant_id, "String"),
        _hardcoded(CLAIM_DEFAULT_ROLE, spec.roles[0], "String"),
        _hardcoded(CLAIM_ALLOWED_ROLES, json.dumps(list(spec.roles)), "JSON"),
        {
            "name": CLAIM_USER,
            "protocol": "openid-connect",
            "protocolMapper": "oidc-usermodel-property-mapper",
            "consentRequired": False,
            "config": {"user.attribute": "id", "claim.name": keycloak_claim(CLAIM_USER), "jsonType.label": "String"}
            | _TOKEN_ONLY,
        },
        _hardcoded(f"{KEY_CLAIM}.{NAME}", spec.name, "String"),
    ]
    if spec.expires_at is not None:
        found.append(_hardcoded(f"{KEY_CLAIM}.{EXPIRY}", str(int(spec.expires_at.timestamp())), "long"))
    for audience in sorted(set(audiences)):
        found.append(
            {
                "name": f"audience {audience}",
                "protocol": "openid-connect",
                "protocolMapper": "oidc-audience-mapper",
                "consentRequired": False,
                "config": {"included.custom.audience": audience, "access.token.claim": "true"},
            }
        )
    return found


def client_representation(spec: ApiKeySpec, audiences: Iterable[str] = ()) -> dict[str, Any]:
    """The ClientRepresentation POSTed to create the key."""
    attributes = {
        MARK: "true",
        ROLES_ATTRIBUTE: json.dumps(list(spec.roles)),
        EXPIRES_ATTRIBUTE: iso(spec.expires_at) or "",
        CREATED_BY_ATTRIBUTE: spec.created_by,
        CREATED_AT_ATTRIBUTE: iso(spec.created_at) or "",
        "oauth2.device.authorization.grant.enabled": "false",
        "oidc.ciba.grant.enabled": "false",
    }
    return {
        "clientId": spec.name,
        "name": f"API key {spec.name}",
        "description": "API key issued by the election webhook (createApiKey); do not edit by hand",
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "bearerOnly": False,
        "clientAuthenticatorType": "client-secret",
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": True,
        "fullScopeAllowed": False,
        "frontchannelLogout": False,
        "redirectUris": [],
        "webOrigins": [],
        "attributes": attributes,
        "protocolMappers": mappers(spec, audiences),
    }


def is_api_key(client: Mapping[str, Any]) -> bool:
    """Whether a Keycloak client is one of our API keys."""
    attributes = client.get("attributes")
    return isinstance(attributes, dict) and attributes.get(MARK) == "true"


def _when(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None


def key_info(client: Mapping[str, Any]) -> ApiKeyInfo:
    """What a key client's attributes say about the key."""
    attributes = client.get("attributes") or {}
    try:
        roles_value = json.loads(str(attributes.get(ROLES_ATTRIBUTE) or "[]"))
    except ValueError:
        roles_value = []
    roles: Sequence[Any] = roles_value if isinstance(roles_value, list) else []
    created_by = attributes.get(CREATED_BY_ATTRIBUTE)
    return ApiKeyInfo(
        name=str(client.get("clientId")),
        roles=tuple(str(r) for r in roles),
        expires_at=_when(attributes.get(EXPIRES_ATTRIBUTE)),
        enabled=bool(client.get("enabled", True)),
        created_by=created_by if isinstance(created_by, str) else None,
        created_at=_when(attributes.get(CREATED_AT_ATTRIBUTE)),
    )


__all__ = [
    "MARK",
    "MAX_ROLES",
    "RESERVED",
    "ApiKeyInfo",
    "ApiKeySpec",
    "client_representation",
    "is_api_key",
    "iso",
    "key_info",
    "mappers",
    "name_allowed",
    "name_problem",
]
