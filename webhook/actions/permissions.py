"""What a verified caller may do: permission roles, realm powers and tenant rules shared by the actions. Pure.

Rules of this module:
- A permission is a role name in the token's `x-hasura-allowed-roles` (the platform's model: the
  session's role only selects Hasura's permissions, the token's roles grant the actions').
- What a realm kind may do at all (create events, create tenants, act for another tenant) is
  `webhook/core/powers.py`'s table, attached to the identity by the verifier: an action needs both the
  role and the power.
- A caller acts for its own tenant, unless its realm has `Power.ACT_FOR_OTHER_TENANT` (the
  super-admin tenant's own realm).
"""

from __future__ import annotations

from typing import Final

from webhook.actions.auth import Caller
from webhook.actions.errors import ActionError, Code
from webhook.core.powers import Power

_REFUSED: Final = {
    Power.CREATE_EVENTS: "tokens of this realm may not create election events (an event realm's token?)",
    Power.CREATE_TENANTS: "only the super-admin tenant's own realm may create tenants",
    Power.ACT_FOR_OTHER_TENANT: "tenant_id is not the caller's tenant",
    Power.PLATFORM_ROLES: "tokens of this realm get no platform roles",
}


def require_permission(caller: Caller, permission: str) -> None:
    """`forbidden` unless the token allows `permission`."""
    if permission not in caller.identity.allowed_roles:
        raise ActionError(Code.FORBIDDEN, f"the caller's token lacks the {permission!r} permission")


def require_power(caller: Caller, power: Power) -> None:
    """`forbidden` unless the caller's realm kind has `power`."""
    if power not in caller.identity.powers:
        raise ActionError(Code.FORBIDDEN, _REFUSED[power])


def require_tenant(caller: Caller, tenant_id: str) -> bool:
    """`tenant-mismatch` unless `tenant_id` is the caller's tenant or its realm may act for others.

    True when the caller acts for another tenant.
    """
    if tenant_id == caller.identity.tenant_id.lower():
        return False
    if Power.ACT_FOR_OTHER_TENANT in caller.identity.powers:
        return True
    raise ActionError(Code.TENANT_MISMATCH, _REFUSED[Power.ACT_FOR_OTHER_TENANT])


__all__ = ["require_permission", "require_power", "require_tenant"]
