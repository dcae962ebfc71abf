"""`createApiKey`, `rotateApiKey`, `revokeApiKey` and `apiKeys`: a tenant's administrators manage its API keys.

Rules of this module:
- Permissions: API_KEY_WRITE_ROLE (default `api-key-write`) in the caller's token's allowed roles for
  create, rotate and revoke; API_KEY_READ_ROLE (default `api-key-read`) or the write role for `apiKeys`.
- The key is always in the caller's own tenant realm (`tenant-<the token's tenant>`): a token of an
  event realm or of an extra realm is `forbidden`; no input names a tenant or realm.
- Requested roles: 1 to 50 distinct role names, each in the caller's own allowed roles (as the
  verifier left them: forbidden and, outside the super-admin tenant, platform roles already removed)
  and never in FORBIDDEN_ROLES or PLATFORM_ROLES, whoever asks. Anything else is `forbidden` naming
  the role, and nothing is created.
- `expires_at` (optional, ISO 8601 with a time zone) must be in the future.
- The secret is in the answer of create and rotate only; it is never logged, stored or put in an
  error (the endpoint logs ids, not outputs).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from webhook.actions.auth import Caller
from webhook.actions.context import ActionContext
from webhook.actions.envelope import ActionCall
from webhook.actions.errors import ActionError, Code
from webhook.actions.fields import InputReader, json_type
from webhook.actions.permissions import require_permission
from webhook.core.realms import tenant_realm_name
from webhook.provisioning.apikeyclient import MAX_ROLES, ApiKeyInfo, iso, name_problem
from webhook.provisioning.apikeys import (
    Actor,
    ApiKeyService,
    IssuedKey,
    KeyExists,
    KeyNotFound,
    TooManyKeys,
)
from webhook.provisioning.keycloakadmin import KeycloakAdminError

DEFAULT_WRITE_ROLE: Final = "api-key-write"
DEFAULT_READ_ROLE: Final = "api-key-read"
PERMISSION: Final = DEFAULT_WRITE_ROLE  # the realm role the templates define for these actions


@dataclass(frozen=True, slots=True)
class ApiKeyPolicy:
    """The API key actions' settings and service (built by the app's lifespan)."""

    service: ApiKeyService | None  # None: no Keycloak admin client configured
    write_role: str = DEFAULT_WRITE_ROLE
    read_role: str = DEFAULT_READ_ROLE
    never_granted: frozenset[str] = frozenset()  # FORBIDDEN_ROLES | PLATFORM_ROLES
    token_url_base: str = ""  # the public issuer base: integrators get <base>/realms/<realm>/...token


def _policy(ctx: ActionContext) -> tuple[ApiKeyPolicy, ApiKeyService]:
    policy = ctx.api_keys
    if policy is None or policy.service is None:
        raise ActionError(Code.UNAVAILABLE, "API keys need the service's Keycloak admin client, which is not set")
    return policy, policy.service


def _own_tenant(caller: Caller) -> str:
    """The caller's tenant, if its token comes from that tenant's own realm."""
    identity = caller.identity
    tenant = identity.tenant_id.lower()
    if identity.event_id is not None or identity.realm.name != tenant_realm_name(tenant):
        raise ActionError(Code.FORBIDDEN, "API keys are managed with a token of the tenant's own realm")
    return tenant


def _writer(ctx: ActionContext, caller: Caller) -> tuple[ApiKeyPolicy, ApiKeyService, str]:
    """Policy, service and tenant for a caller allowed to change the tenant's keys."""
    policy, service = _policy(ctx)
    require_permission(caller, policy.write_role)
    return policy, service, _own_tenant(caller)


def _actor(caller: Caller) -> Actor:
    return Actor(
        who=caller.identity.user_id,
        source="action",
        realm=caller.identity.realm.name,
    )


def _name(read: InputReader) -> str:
    name = read.text("name", required=True, non_empty=True, max_chars=63)
    if name is not None and (problem := name_problem(name)) is not None:
        read.problems["name"] = problem
    return name or ""  # "" only with a problem recorded: check() raises before it is used


def _name_only(call: ActionCall) -> str:
    read = InputReader(call.input, known=("name",))
    name = _name(read)
    read.check()
    return name


def parse_roles(value: object, problems: dict[str, str]) -> tuple[str, ...]:
    """The requested role list: distinct non-empty strings, 1 to MAX_ROLES of them. Pure."""
    if type(value) is not list:
        problems["roles"] = "required" if value is None else f"expected an array, got {json_type(value)}"
        return ()
    if not value or len(value) > MAX_ROLES:
        problems["roles"] = f"1 to {MAX_ROLES} roles"
        return ()
    if any(type(r) is not str or not r.strip() or len(r) > 255 for r in value):
        problems["roles"] = "every role must be a non-empty string of at most 255 characters"
        return ()
    return tuple(dict.fromkeys(value))


def parse_expiry(value: object, now: dt.datetime, problems: dict[str, str]) -> dt.datetime | None:
    """`expires_at`: ISO 8601 with a time zone, in the future (None: the key never expires). Pure."""
    if value is None:
        return None
    if type(value) is not str:
        problems["expires_at"] = f"expected a timestamp string, got {json_type(value)}"
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        problems["expires_at"] = "not an ISO 8601 timestamp"
        return None
    if when.tzinfo is None:
        problems["expires_at"] = "needs a time zone (for example Z)"
        return None
    if when <= now:
        problems["expires_at"] = "must be in the future"
        return None
    return when.astimezone(dt.UTC).replace(microsecond=0)


def check_roles(caller: Caller, roles: tuple[str, ...], never_granted: frozenset[str]) -> None:
    """`forbidden` unless every role is the caller's own and none is forbidden or platform-wide. Pure."""
    for role in roles:
        if role in never_granted:
            raise ActionError(Code.FORBIDDEN, f"role {role!r} can never be given to an API key", fields={"roles": role})
        if role not in caller.identity.allowed_roles:
            raise ActionError(
                Code.FORBIDDEN, f"the caller's token does not allow role {role!r}", fields={"roles": role}
            )


def _issued(issued: IssuedKey, policy: ApiKeyPolicy, tenant: str) -> dict[str, Any]:
    return {
        **issued.info.as_output(),
        "client_secret": issued.secret,
        "tenant_id": tenant,
        "realm": issued.realm,
        "token_url": f"{policy.token_url_base}/realms/{issued.realm}/protocol/openid-connect/token",
    }


async def _run(coroutine: Any) -> Any:
    """The service's refusals as action errors."""
    try:
        return await coroutine
    except KeyExists as exc:
        raise ActionError(Code.CONFLICT, str(exc)) from None
    except KeyNotFound as exc:
        raise ActionError(Code.NOT_FOUND, str(exc)) from None
    except TooManyKeys as exc:
        raise ActionError(Code.CONFLICT, str(exc)) from None
    except KeycloakAdminError:
        raise ActionError(Code.UNAVAILABLE, "Keycloak did not complete the operation; retry later") from None


async def create_api_key(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """A new key in the caller's tenant realm, with a subset of the caller's roles; its secret, once."""
    policy, service, tenant = _writer(ctx, caller)
    read = InputReader(call.input, known=("name", "roles", "expires_at"))
    name = _name(read)
    roles = parse_roles(call.input.get("roles"), read.problems)
    expires_at = parse_expiry(call.input.get("expires_at"), ctx.now(), read.problems)
    read.check()
    check_roles(caller, roles, policy.never_granted)
    issued: IssuedKey = await _run(service.create(tenant, name, roles, expires_at, _actor(caller)))
    return _issued(issued, policy, tenant)


async def rotate_api_key(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """A new secret for one of the tenant's keys (the old secret stops working); the secret, once."""
    policy, service, tenant = _writer(ctx, caller)
    issued: IssuedKey = await _run(service.rotate(tenant, _name_only(call), _actor(caller)))
    return _issued(issued, policy, tenant)


async def revoke_api_key(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """Delete one of the tenant's keys: no new tokens; live ones end as the README says."""
    _, service, tenant = _writer(ctx, caller)
    info: ApiKeyInfo = await _run(service.revoke(tenant, _name_only(call), _actor(caller)))
    return {"name": info.name, "revoked": True, "revoked_at": iso(ctx.now())}


async def api_keys(ctx: ActionContext, call: ActionCall, caller: Caller) -> dict[str, Any]:
    """The tenant's keys (never a secret): `{"tenant_id", "keys": [ApiKey]}`."""
    policy, service = _policy(ctx)
    if policy.read_role not in caller.identity.allowed_roles:
        require_permission(caller, policy.write_role)
    tenant = _own_tenant(caller)
    InputReader(call.input, known=()).check()
    keys: list[ApiKeyInfo] = await _run(service.list(tenant))
    return {"tenant_id": tenant, "keys": [key.as_output() for key in keys]}


__all__ = [
    "DEFAULT_READ_ROLE",
    "DEFAULT_WRITE_ROLE",
    "PERMISSION",
    "ApiKeyPolicy",
    "api_keys",
    "check_roles",
    "create_api_key",
    "parse_expiry",
    "parse_roles",
    "revoke_api_key",
    "rotate_api_key",
]
