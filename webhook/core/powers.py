"""Which realm kinds may do what: the one table behind the hook's and the actions' decisions. Pure.

Rules of this module:
- A verified token's power comes from the *kind* of realm that signed it, never from its claims:
  the kind is decided by the realm's name (and SUPER_ADMIN_TENANT_ID) alone.
- Kinds: `super-admin-tenant` (`tenant-<SUPER_ADMIN_TENANT_ID>`), `tenant` (any other
  `tenant-<uuid>`), `event` (`tenant-<uuid>-event-<uuid>`, whatever the tenant: voters' realms) and
  `extra` (TRUSTED_EXTRA_REALMS, whose tenant is only claimed: even one claiming the super-admin
  tenant is an `extra` realm).
- `POLICY` is the whole decision; the verifier attaches `powers_of(realm)` to every identity, the
  hook grants `PLATFORM_ROLES` only with `Power.PLATFORM_ROLES`, and the action handlers check the
  power they need (`webhook/actions/permissions.py`). Roles in the token are needed *as well*.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from webhook.core.realms import Realm


class RealmKind(StrEnum):
    """What a trusted realm is, for the purpose of deciding what its tokens may do."""

    SUPER_ADMIN_TENANT = "super-admin-tenant"
    TENANT = "tenant"
    EVENT = "event"
    EXTRA = "extra"


class Power(StrEnum):
    """Things only some realm kinds' tokens may do."""

    ACT_FOR_OTHER_TENANT = "act-for-other-tenant"
    """Name another tenant than the token's own in an action's input (create its events)."""
    PLATFORM_ROLES = "platform-roles"
    """Be granted the roles of PLATFORM_ROLES (otherwise they are removed from the token's roles)."""
    CREATE_EVENTS = "create-events"
    """Call `insertElectionEvent` (with the `election-event-create` role)."""
    CREATE_TENANTS = "create-tenants"
    """Call `insertTenant` (with the `tenant-create` role)."""


POLICY: Final[Mapping[RealmKind, frozenset[Power]]] = {
    RealmKind.SUPER_ADMIN_TENANT: frozenset(Power),
    RealmKind.TENANT: frozenset({Power.CREATE_EVENTS}),
    RealmKind.EXTRA: frozenset({Power.CREATE_EVENTS}),
    RealmKind.EVENT: frozenset(),
}


def realm_kind(realm: Realm, super_admin_tenant_id: str | None) -> RealmKind:
    """The kind of `realm` (its name decides; `super_admin_tenant_id` a lowercase UUID or None)."""
    if realm.tenant_id is None:
        return RealmKind.EXTRA
    if realm.event_id is not None:
        return RealmKind.EVENT
    if super_admin_tenant_id is not None and realm.tenant_id == super_admin_tenant_id:
        return RealmKind.SUPER_ADMIN_TENANT
    return RealmKind.TENANT


def powers_of(realm: Realm, super_admin_tenant_id: str | None) -> frozenset[Power]:
    """What tokens of `realm` may do."""
    return POLICY[realm_kind(realm, super_admin_tenant_id)]


__all__ = ["POLICY", "Power", "RealmKind", "powers_of", "realm_kind"]
