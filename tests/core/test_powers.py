"""The realm-kind policy table (webhook/core/powers.py): which kind of realm may do what."""

from __future__ import annotations

import pytest

from webhook.core.powers import POLICY, Power, RealmKind, powers_of, realm_kind
from webhook.core.realms import Realm, parse_realm_name

SUPER = "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
TENANT = "3c1f6a2e-8b4d-4e5f-9a0b-1c2d3e4f5a6b"
EVENT = "7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b"


def realm(name: str) -> Realm:
    parsed = parse_realm_name(name)
    return parsed if parsed is not None else Realm(name, None, None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (f"tenant-{SUPER}", RealmKind.SUPER_ADMIN_TENANT),
        (f"tenant-{TENANT}", RealmKind.TENANT),
        (f"tenant-{SUPER}-event-{EVENT}", RealmKind.EVENT),
        (f"tenant-{TENANT}-event-{EVENT}", RealmKind.EVENT),
        ("platform-ops", RealmKind.EXTRA),
    ],
)
def test_the_realm_name_decides_the_kind(name: str, kind: RealmKind) -> None:
    """Kinds come from the name and SUPER_ADMIN_TENANT_ID only; the super tenant's event realm is an event realm."""
    assert realm_kind(realm(name), SUPER) is kind


def test_without_a_super_admin_tenant_nobody_has_its_powers() -> None:
    """With SUPER_ADMIN_TENANT_ID unset, the super tenant's realm is a plain tenant realm."""
    assert powers_of(realm(f"tenant-{SUPER}"), None) == POLICY[RealmKind.TENANT]


def test_the_table() -> None:
    """Only the super-admin tenant's realm acts for others, gets platform roles and creates tenants;
    event realms may do none of it, not even create events; tenant and extra realms create events."""
    assert {
        RealmKind.SUPER_ADMIN_TENANT: frozenset(Power),
        RealmKind.TENANT: {Power.CREATE_EVENTS},
        RealmKind.EXTRA: {Power.CREATE_EVENTS},
        RealmKind.EVENT: frozenset(),
    } == POLICY
