"""What a verified caller may do: permission roles and tenant rules shared by the actions. Pure.

Rules of this module:
- A permission is a role name in the token's `x-hasura-allowed-roles` (the platform's model: the
  session's role only selects Hasura's permissions, the token's roles grant the actions').
- A caller acts for its own tenant. The super-admin tenant (SUPER_ADMIN_TENANT_ID) may act for any
  tenant where an action allows it, and only it may create tenants, from its tenant realm.
"""

from __future__ import annotations

from webhook.actions.auth import Caller
from webhook.actions.errors import ActionError, Code


def require_permission(caller: Caller, permission: str) -> None:
    """`forbidden` unless the token allows `permission`."""
    if permission not in caller.identity.allowed_roles:
        raise ActionError(Code.FORBIDDEN, f"the caller's token lacks the {permission!r} permission")


def require_tenant(caller: Caller, tenant_id: str, super_admin_tenant_id: str | None) -> bool:
    """`tenant-mismatch` unless `tenant_id` is the caller's tenant or the caller is the super admin.

    True when the super-admin tenant acts for another tenant.
    """
    own = caller.identity.tenant_id.lower()
    if tenant_id == own:
        return False
    if super_admin_tenant_id is not None and own == super_admin_tenant_id:
        return True
    raise ActionError(Code.TENANT_MISMATCH, "tenant_id is not the caller's tenant")


def require_super_admin(caller: Caller, super_admin_tenant_id: str | None) -> None:
    """`forbidden` unless the caller's token comes from the super-admin tenant's own realm."""
    identity = caller.identity
    if super_admin_tenant_id is None or identity.tenant_id.lower() != super_admin_tenant_id:
        raise ActionError(Code.FORBIDDEN, "only the super-admin tenant may do this")
    if identity.event_id is not None:
        raise ActionError(Code.FORBIDDEN, "this needs a tenant realm's token, not an event realm's")


__all__ = ["require_permission", "require_super_admin", "require_tenant"]
