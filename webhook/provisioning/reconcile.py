"""What the service owns in a realm, and how the live realm differs from the template there. Pure.

Rules of this module:
- The service owns (and converges): the realm's top-level settings the template names, except
  `enabled`; the realm attributes the template names (merged into the live ones, never replacing
  them); the template's realm roles, groups and clients (created when missing); of each template
  client, the fields and attributes the template names and its protocol mappers by name (extra
  mappers an operator added are left alone); the composites of the default role; the realm roles of
  the `api-key-client` service account that its hardcoded default-role mapper claims.
- The operator owns everything else: `enabled`, attributes the template does not name, users,
  SMTP, themes, identity providers, extra clients/mappers/roles, every secret.
- `OPERATOR_FIELDS` are never sent in a PUT; sub-resources (`clients`, `roles`, `groups`...) are
  never sent in a PUT either (Keycloak ignores them there) but through `partialImport` with
  `ifResourceExists: SKIP` (never `OVERWRITE`: it would recreate clients with new ids and secrets).
- `drift()` compares what Keycloak holds to the template and lists every difference in the owned
  parts, one short line each; empty means converged. The worker marks a job `done` only when the
  read-back realm has no drift; `webhook provisioning check` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from webhook.core.session import CLAIM_DEFAULT_ROLE
from webhook.provisioning.templates import hasura_claims, keycloak_claim

API_KEY_CLIENT: Final = "api-key-client"
#: Top-level realm fields that are never sent in an update: the operator's, or sub-resources.
OPERATOR_FIELDS: Final = frozenset(
    {
        "realm",
        "id",
        "enabled",
        "attributes",
        "smtpServer",
        "loginTheme",
        "accountTheme",
        "adminTheme",
        "emailTheme",
        "identityProviders",
        "identityProviderMappers",
        "users",
        "federatedUsers",
    }
)
SUB_RESOURCES: Final = frozenset(
    {"clients", "roles", "groups", "defaultRole", "components", "clientScopes", "scopeMappings"}
)
#: Client fields the service never changes on an existing client.
CLIENT_UNOWNED: Final = frozenset({"id", "secret", "protocolMappers", "attributes", "registrationAccessToken"})


@dataclass(frozen=True, slots=True)
class LiveRealm:
    """What Keycloak holds for a realm, read back through the admin API."""

    realm: Mapping[str, Any]
    clients: list[dict[str, Any]]
    roles: list[str]
    default_roles: list[str] = field(default_factory=list)
    service_account_roles: list[str] | None = None  # api-key-client's; None: no service account


def _mappers(client: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(m.get("name")): m for m in client.get("protocolMappers") or [] if isinstance(m, dict)}


def _clients(realm: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(c.get("clientId")): c for c in realm.get("clients") or [] if isinstance(c, dict)}


def realm_update(rendered: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PUT body that converges the owned top-level fields, or None if nothing differs."""
    wanted = {k: v for k, v in rendered.items() if k not in OPERATOR_FIELDS and k not in SUB_RESOURCES}
    attributes = {str(k): str(v) for k, v in (rendered.get("attributes") or {}).items()}
    live_attributes = dict(live.get("attributes") or {})
    changed = {k: v for k, v in wanted.items() if live.get(k) != v}
    if any(live_attributes.get(k) != v for k, v in attributes.items()):
        changed["attributes"] = {**live_attributes, **attributes}
    return changed or None


def partial_import(rendered: Mapping[str, Any]) -> dict[str, Any]:
    """The partialImport body that adds the template's missing roles, groups and clients (SKIP)."""
    body: dict[str, Any] = {"ifResourceExists": "SKIP"}
    for name in ("roles", "groups", "clients"):
        if rendered.get(name):
            body[name] = rendered[name]
    return body


def client_update(wanted: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PUT body for an existing client (owned fields, attributes merged), or None if converged."""
    changed = {k: v for k, v in wanted.items() if k not in CLIENT_UNOWNED and live.get(k) != v}
    attributes = {str(k): str(v) for k, v in (wanted.get("attributes") or {}).items()}
    live_attributes = dict(live.get("attributes") or {})
    if any(live_attributes.get(k) != v for k, v in attributes.items()):
        changed["attributes"] = {**live_attributes, **attributes}
    if not changed:
        return None
    return {"clientId": wanted.get("clientId"), **changed}


def mapper_differs(wanted: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether a live mapper differs from the template's in type, protocol or a config key it names."""
    if wanted.get("protocolMapper") != live.get("protocolMapper"):
        return True
    if wanted.get("protocol", "openid-connect") != live.get("protocol", "openid-connect"):
        return True
    live_config = live.get("config") or {}
    return any(live_config.get(k) != v for k, v in (wanted.get("config") or {}).items())


def mapper_plan(
    wanted_client: Mapping[str, Any], live_mappers: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """(mappers to create, (live id, mapper) to update) that bring a client's mappers to the template."""
    live = {str(m.get("name")): m for m in live_mappers}
    create: list[dict[str, Any]] = []
    update: list[tuple[str, dict[str, Any]]] = []
    for name, mapper in _mappers(wanted_client).items():
        found = live.get(name)
        if found is None:
            create.append(dict(mapper))
        elif mapper_differs(mapper, found):
            update.append((str(found.get("id")), dict(mapper)))
    return create, update


def default_role_composites(rendered: Mapping[str, Any]) -> list[str]:
    """The realm-role composites the template gives its default role."""
    default = str((rendered.get("defaultRole") or {}).get("name", ""))
    for role in (rendered.get("roles") or {}).get("realm", []):
        if isinstance(role, dict) and role.get("name") == default:
            return [str(r) for r in (role.get("composites") or {}).get("realm", [])]
    return []


def service_account_roles(rendered: Mapping[str, Any]) -> list[str]:
    """Realm roles the `api-key-client` service account needs: the default role its mapper claims."""
    client = _clients(rendered).get(API_KEY_CLIENT)
    if client is None or not client.get("serviceAccountsEnabled"):
        return []
    value = (_mappers(client).get(CLAIM_DEFAULT_ROLE, {}).get("config") or {}).get("claim.value")
    return [str(value)] if value else []


def template_roles(rendered: Mapping[str, Any]) -> list[str]:
    """Names of the template's realm roles."""
    return [str(r.get("name")) for r in (rendered.get("roles") or {}).get("realm", []) if isinstance(r, dict)]


def drift(rendered: Mapping[str, Any], live: LiveRealm, kind: str) -> list[str]:
    """Every difference between the live realm and the template in the parts the service owns."""
    found: list[str] = []
    if realm_update(rendered, live.realm) is not None:
        fields = sorted(realm_update(rendered, live.realm) or {})
        found.append(f"realm settings differ: {', '.join(fields)}")
    missing_roles = sorted(set(template_roles(rendered)) - set(live.roles))
    if missing_roles:
        found.append(f"realm roles missing: {', '.join(missing_roles)}")
    missing_defaults = sorted(set(default_role_composites(rendered)) - set(live.default_roles))
    if missing_defaults:
        found.append(f"default role lacks: {', '.join(missing_defaults)}")
    live_clients = {str(c.get("clientId")): c for c in live.clients}
    claims = set(hasura_claims(kind))  # type: ignore[arg-type]
    for client_id, wanted in _clients(rendered).items():
        client = live_clients.get(client_id)
        if client is None:
            found.append(f"client {client_id} is missing")
            continue
        update = client_update(wanted, client)
        if update is not None:
            found.append(f"client {client_id}: settings differ: {', '.join(sorted(set(update) - {'clientId'}))}")
        live_mappers = _mappers(client)
        for name, mapper in _mappers(wanted).items():
            have = live_mappers.get(name)
            if have is None:
                found.append(f"client {client_id}: no mapper for {name}")
            elif name in claims and (have.get("config") or {}).get("claim.name") != keycloak_claim(name):
                found.append(f"client {client_id}: mapper {name} writes another claim")
            elif mapper_differs(mapper, have):
                found.append(f"client {client_id}: mapper {name} differs")
    wanted_sa = service_account_roles(rendered)
    if wanted_sa:
        have_sa = set(live.service_account_roles or [])
        lacking = sorted(set(wanted_sa) - have_sa)
        if live.service_account_roles is None:
            found.append(f"client {API_KEY_CLIENT} has no service account")
        elif lacking:
            found.append(f"client {API_KEY_CLIENT}: service account lacks realm roles: {', '.join(lacking)}")
    return found


__all__ = [
    "API_KEY_CLIENT",
    "OPERATOR_FIELDS",
    "SUB_RESOURCES",
    "LiveRealm",
    "client_update",
    "default_role_composites",
    "drift",
    "mapper_differs",
    "mapper_plan",
    "partial_import",
    "realm_update",
    "service_account_roles",
    "template_roles",
]
