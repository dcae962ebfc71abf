"""webhook.core.realms: trusted realm names and the exact issuer match."""

from __future__ import annotations

import pytest

from webhook.core.realms import Realm, RealmPolicy, parse_realm_name
from webhook.core.reasons import Reason, Rejected

from .conftest import (
    EVENT_ID,
    EVENT_REALM,
    EXTRA_REALM,
    ISSUER_BASE,
    KEYCLOAK_INTERNAL,
    TENANT_ID,
    TENANT_REALM,
)

PREFIX = f"{ISSUER_BASE}/realms/"


def test_parse_tenant_realm() -> None:
    """tenant-<uuid> is a tenant realm without an event."""
    assert parse_realm_name(TENANT_REALM) == Realm(TENANT_REALM, TENANT_ID, None)


def test_parse_event_realm() -> None:
    """tenant-<uuid>-event-<uuid> names both the tenant and the event."""
    assert parse_realm_name(EVENT_REALM) == Realm(EVENT_REALM, TENANT_ID, EVENT_ID)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f"tenant-{TENANT_ID.upper()}", id="uppercase-uuid"),
        pytest.param(f"Tenant-{TENANT_ID}", id="uppercase-prefix"),
        pytest.param(f"tenant-{TENANT_ID.replace('-', '')}", id="no-dashes"),
        pytest.param(f"tenant-{{{TENANT_ID}}}", id="braced-uuid"),
        pytest.param(f"tenant-{TENANT_ID}-event-", id="empty-event"),
        pytest.param(f"tenant-{TENANT_ID}-event-{EVENT_ID.upper()}", id="uppercase-event"),
        pytest.param(f"tenant-{TENANT_ID}-event-{EVENT_ID}-event-{EVENT_ID}", id="two-events"),
        pytest.param(f"tenant-{TENANT_ID}\n", id="trailing-newline"),
        pytest.param(f" tenant-{TENANT_ID}", id="leading-space"),
        pytest.param(f"tenant-{TENANT_ID}/", id="trailing-slash"),
        pytest.param(f"tenant-{TENANT_ID}x", id="suffix"),
        pytest.param(f"xtenant-{TENANT_ID}", id="prefix"),
        pytest.param(f"tenant-{TENANT_ID[:-1]}", id="short-uuid"),
        pytest.param(f"tenant-{TENANT_ID[:-1]}g", id="non-hex"),
        pytest.param(f"tenant-{TENANT_ID[:-1]}\u0669", id="arabic-indic-digit"),
        pytest.param(f"tenant-{TENANT_ID[:-1]}\uff41", id="fullwidth-a"),
        pytest.param(f"tenant\u2010{TENANT_ID}", id="unicode-hyphen"),
        pytest.param(f"tenant-{TENANT_ID}".replace("a", "\u0430"), id="cyrillic-a"),
        pytest.param("tenant-", id="no-uuid"),
        pytest.param("", id="empty"),
        pytest.param(EXTRA_REALM, id="extra-realm"),
        pytest.param("master", id="master"),
    ],
)
def test_parse_realm_name_rejects(name: str) -> None:
    """Only canonical lowercase tenant/event names match the pattern."""
    assert parse_realm_name(name) is None


@pytest.mark.parametrize(
    ("iss", "expected"),
    [
        (f"{PREFIX}{TENANT_REALM}", Realm(TENANT_REALM, TENANT_ID, None)),
        (f"{PREFIX}{EVENT_REALM}", Realm(EVENT_REALM, TENANT_ID, EVENT_ID)),
        (f"{PREFIX}{EXTRA_REALM}", Realm(EXTRA_REALM, None, None)),
    ],
)
def test_realm_from_trusted_issuer(policy: RealmPolicy, iss: str, expected: Realm) -> None:
    """An iss exactly <issuer base>/realms/<trusted name> maps to that realm."""
    assert policy.realm_from_issuer(iss) == expected


def test_realm_from_second_issuer_base() -> None:
    """Each configured issuer base is accepted; the realm is the same."""
    policy = RealmPolicy(("https://auth.example.org", "http://127.0.0.1:8090"), frozenset(), KEYCLOAK_INTERNAL)
    for base in ("https://auth.example.org", "http://127.0.0.1:8090"):
        assert policy.realm_from_issuer(f"{base}/realms/{TENANT_REALM}").tenant_id == TENANT_ID


@pytest.mark.parametrize(
    "iss",
    [
        pytest.param(f"{PREFIX}{TENANT_REALM}/", id="trailing-slash"),
        pytest.param(f"{PREFIX}{EXTRA_REALM}/", id="extra-trailing-slash"),
        pytest.param(f"{PREFIX}../realms/{TENANT_REALM}", id="dotdot"),
        pytest.param(f"{PREFIX}{TENANT_REALM}/../{TENANT_REALM}", id="dotdot-after"),
        pytest.param(f"{ISSUER_BASE}/x/../realms/{TENANT_REALM}", id="dotdot-before"),
        pytest.param(f"{PREFIX}%2e%2e/realms/{TENANT_REALM}", id="encoded-dotdot"),
        pytest.param(f"{PREFIX}tenant%2D{TENANT_ID}", id="encoded-dash"),
        pytest.param(f"{PREFIX}{TENANT_REALM}%2F", id="encoded-slash"),
        pytest.param(f"{PREFIX}{TENANT_REALM}?x", id="query"),
        pytest.param(f"{PREFIX}{TENANT_REALM}?", id="empty-query"),
        pytest.param(f"{PREFIX}{TENANT_REALM}#x", id="fragment"),
        pytest.param(f"{PREFIX}{TENANT_REALM};x", id="params"),
        pytest.param(f"http://kc.test@evil.test/realms/{TENANT_REALM}", id="userinfo-evil-host"),
        pytest.param(f"http://evil.test@kc.test/realms/{TENANT_REALM}", id="userinfo"),
        pytest.param(f"http://evil.test/realms/{TENANT_REALM}", id="other-host"),
        pytest.param(f"http://kc.test.evil.test/realms/{TENANT_REALM}", id="suffix-host"),
        pytest.param(f"http://kc.test:80/realms/{TENANT_REALM}", id="explicit-port"),
        pytest.param(f"https://kc.test/realms/{TENANT_REALM}", id="https-vs-http"),
        pytest.param(f"HTTP://kc.test/realms/{TENANT_REALM}", id="scheme-case"),
        pytest.param(f"http://KC.test/realms/{TENANT_REALM}", id="host-case"),
        pytest.param(f"{ISSUER_BASE}//realms/{TENANT_REALM}", id="double-slash"),
        pytest.param(f"{ISSUER_BASE}/Realms/{TENANT_REALM}", id="realms-case"),
        pytest.param(f"{ISSUER_BASE}/realms//{TENANT_REALM}", id="double-slash-after"),
        pytest.param(f"{PREFIX}tenant-{TENANT_ID.upper()}", id="uppercase-uuid"),
        pytest.param(f"{PREFIX}tenant\u2010{TENANT_ID}", id="unicode-hyphen"),
        pytest.param(f"{PREFIX}{TENANT_REALM}".replace("a", "\u0430"), id="cyrillic-a"),
        pytest.param(f"http://k\u0441.test/realms/{TENANT_REALM}", id="cyrillic-host"),
        pytest.param(f"{PREFIX}\uff54enant-{TENANT_ID}", id="fullwidth-t"),
        pytest.param(f"{PREFIX}{TENANT_REALM}\n", id="trailing-newline"),
        pytest.param(f"{PREFIX}{TENANT_REALM}\x00", id="nul"),
        pytest.param(f" {PREFIX}{TENANT_REALM}", id="leading-space"),
        pytest.param(f"{PREFIX}{TENANT_REALM} ", id="trailing-space"),
        pytest.param(f"{PREFIX}Platform-Admin", id="extra-case"),
        pytest.param(f"{PREFIX}master", id="untrusted-realm"),
        pytest.param(PREFIX, id="no-realm"),
        pytest.param(ISSUER_BASE, id="base-only"),
        pytest.param(TENANT_REALM, id="name-only"),
        pytest.param("", id="empty"),
        pytest.param(f"{PREFIX}{TENANT_REALM}" + "a" * 10_000, id="very-long"),
        pytest.param(f"{PREFIX}{'x' * 600}", id="long-name"),
    ],
)
def test_issuer_tricks_are_unknown(policy: RealmPolicy, iss: str) -> None:
    """Any iss that is not exactly <base>/realms/<trusted name> is unknown_issuer."""
    with pytest.raises(Rejected) as info:
        policy.realm_from_issuer(iss)
    assert info.value.reason is Reason.UNKNOWN_ISSUER


@pytest.mark.parametrize("iss", [None, 1, 1.5, True, [f"{PREFIX}{TENANT_REALM}"], {"iss": f"{PREFIX}{TENANT_REALM}"}])
def test_non_string_issuer_is_unknown(policy: RealmPolicy, iss: object) -> None:
    """A missing or non-string iss is unknown_issuer (no TypeError)."""
    with pytest.raises(Rejected) as info:
        policy.realm_from_issuer(iss)
    assert info.value.reason is Reason.UNKNOWN_ISSUER


def test_bytes_issuer_is_unknown(policy: RealmPolicy) -> None:
    """An iss given as bytes is not a string and is unknown_issuer."""
    with pytest.raises(Rejected) as info:
        policy.realm_from_issuer(f"{PREFIX}{TENANT_REALM}".encode())
    assert info.value.reason is Reason.UNKNOWN_ISSUER


@pytest.mark.parametrize("name", [TENANT_REALM, EVENT_REALM, EXTRA_REALM])
def test_jwks_url_uses_internal_base(policy: RealmPolicy, name: str) -> None:
    """The JWKS URL is built from the configured internal base, never from the issuer base."""
    realm = policy.realm_from_issuer(f"{PREFIX}{name}")
    url = policy.jwks_url(realm)
    assert url == f"{KEYCLOAK_INTERNAL}/realms/{name}/protocol/openid-connect/certs"
    assert ISSUER_BASE not in url


def test_issuer_of_uses_first_issuer_base() -> None:
    """issuer_of gives <first issuer base>/realms/<name>."""
    policy = RealmPolicy(("https://a.test", "https://b.test"), frozenset(), KEYCLOAK_INTERNAL)
    assert policy.issuer_of(Realm(TENANT_REALM, TENANT_ID, None)) == f"https://a.test/realms/{TENANT_REALM}"


def test_realm_for_name(policy: RealmPolicy) -> None:
    """realm_for_name trusts pattern names and configured extra realms only."""
    assert policy.realm_for_name(EXTRA_REALM) == Realm(EXTRA_REALM, None, None)
    assert policy.realm_for_name(TENANT_REALM) == Realm(TENANT_REALM, TENANT_ID, None)
    assert policy.realm_for_name("master") is None


def test_pattern_realm_listed_as_extra_keeps_tenant_binding() -> None:
    """A tenant realm listed as an extra realm still carries its tenant id (its binding is not lost)."""
    policy = RealmPolicy((ISSUER_BASE,), frozenset({TENANT_REALM}), KEYCLOAK_INTERNAL)
    assert policy.realm_from_issuer(f"{PREFIX}{TENANT_REALM}").tenant_id == TENANT_ID
