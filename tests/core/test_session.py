"""webhook.core.session: verified claims + realm -> identity; identity + requested role -> Hasura session."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from webhook.core import session as module
from webhook.core.realms import Realm
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import (
    Identity,
    anonymous_session,
    choose_role,
    identity_from_claims,
    session_json,
    without_roles,
)

from .conftest import (
    EVENT,
    EVENT_ID,
    EVENT_REALM,
    EXTRA,
    HASURA,
    NOW,
    OTHER_EVENT_ID,
    OTHER_TENANT_ID,
    ROLES,
    TENANT,
    TENANT_ID,
    USER_ID,
    hasura_claims,
    keycloak_claims,
)

FORBIDDEN = frozenset({"admin"})


def with_hasura(realm: str = TENANT.name, /, **hasura: Any) -> dict[str, Any]:
    """Keycloak claims whose Hasura namespace has these overrides (None removes a member)."""
    return keycloak_claims(realm, **{HASURA: hasura_claims(**hasura)})


def identity_reason(claims: dict[str, Any], realm: Realm = TENANT) -> Reason | None:
    """None if an identity is built, else the rejection reason."""
    try:
        identity_from_claims(claims, realm, FORBIDDEN)
    except Rejected as exc:
        return exc.reason
    return None


def make_identity(**hasura: Any) -> Identity:
    """The identity of a tenant token with these Hasura-claim overrides."""
    return identity_from_claims(with_hasura(**hasura), TENANT, FORBIDDEN)


# --- identity_from_claims -----------------------------------------------------------------------


def test_identities_share_role_sets_and_realm_strings() -> None:
    """Two tokens with equal role lists (parsed separately) share one granted set, one default-role
    string and the realm's tenant/event strings: a cached identity holds no per-token copy of them."""
    first = identity_from_claims(orjson.loads(orjson.dumps(with_hasura(EVENT_REALM))), EVENT, FORBIDDEN)
    second = identity_from_claims(orjson.loads(orjson.dumps(with_hasura(EVENT_REALM))), EVENT, FORBIDDEN)
    assert first == second
    assert first.allowed_roles is second.allowed_roles
    assert first.default_role is second.default_role
    assert first.tenant_id is EVENT.tenant_id
    assert first.event_id is EVENT.event_id


def test_without_roles_is_shared() -> None:
    """Removing the platform roles gives one shared set per (roles, removed), equal to the difference."""
    roles = frozenset({"admin-user", "platform-admin"})
    first = without_roles(roles, frozenset({"platform-admin"}))
    assert first == {"admin-user"}
    assert without_roles(frozenset(roles), frozenset({"platform-admin"})) is first


def test_shared_role_sets_depend_on_the_forbidden_roles() -> None:
    """The memo is keyed by the forbidden roles too: another verifier's forbidden set is applied."""
    claims = with_hasura(**{"x-hasura-allowed-roles": ["admin-user", "admin"]})
    assert identity_from_claims(claims, TENANT, frozenset({"admin"})).allowed_roles == {"admin-user"}
    assert identity_from_claims(claims, TENANT, frozenset()).allowed_roles == {"admin-user", "admin"}


def test_identity_of_tenant_token() -> None:
    """A good tenant token gives its user, tenant, roles and expiry; no event; and its sid, sub and iat
    (what the revocation check needs)."""
    claims = with_hasura()
    identity = identity_from_claims(claims, TENANT, FORBIDDEN)
    assert identity == Identity(
        realm=TENANT,
        user_id=USER_ID,
        tenant_id=TENANT_ID,
        event_id=None,
        default_role="admin-user",
        allowed_roles=frozenset(ROLES),
        exp=float(claims["exp"]),
        sid=claims["sid"],
        sub=claims["sub"],
        iat=float(claims["iat"]),
    )


def test_identity_of_event_token() -> None:
    """An event token naming its own tenant and event gives both."""
    identity = identity_from_claims(with_hasura(EVENT_REALM, **{"x-hasura-event-id": EVENT_ID}), EVENT, FORBIDDEN)
    assert (identity.tenant_id, identity.event_id) == (TENANT_ID, EVENT_ID)
    assert identity.realm == EVENT


def test_event_taken_from_realm_when_claim_absent() -> None:
    """An event realm's token without an event claim gets the realm's event."""
    identity = identity_from_claims(with_hasura(EVENT_REALM), EVENT, FORBIDDEN)
    assert identity.event_id == EVENT_ID


def test_tenant_taken_from_realm_when_claim_absent() -> None:
    """A tenant realm's token without a tenant claim gets the realm's tenant."""
    assert make_identity(**{"x-hasura-tenant-id": None}).tenant_id == TENANT_ID


def test_user_falls_back_to_sub() -> None:
    """Without x-hasura-user-id, the user is the token's sub."""
    claims = with_hasura(**{"x-hasura-user-id": None})
    claims["sub"] = "sub-user"
    assert identity_from_claims(claims, TENANT, FORBIDDEN).user_id == "sub-user"


def test_missing_user_and_sub_is_invalid() -> None:
    """Without x-hasura-user-id and without sub, the claims are invalid."""
    claims = with_hasura(**{"x-hasura-user-id": None})
    del claims["sub"]
    assert identity_reason(claims) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize(
    ("claims", "realm"),
    [
        pytest.param(with_hasura(**{"x-hasura-tenant-id": OTHER_TENANT_ID}), TENANT, id="other-tenant"),
        pytest.param(with_hasura(**{"x-hasura-tenant-id": TENANT_ID.upper()}), TENANT, id="tenant-uppercase"),
        pytest.param(with_hasura(**{"x-hasura-tenant-id": f" {TENANT_ID}"}), TENANT, id="tenant-with-space"),
        pytest.param(
            with_hasura(EVENT_REALM, **{"x-hasura-tenant-id": OTHER_TENANT_ID}), EVENT, id="event-other-tenant"
        ),
        pytest.param(with_hasura(**{"x-hasura-event-id": EVENT_ID}), TENANT, id="event-claim-on-tenant-realm"),
        pytest.param(with_hasura(EVENT_REALM, **{"x-hasura-event-id": OTHER_EVENT_ID}), EVENT, id="other-event"),
    ],
)
def test_claims_naming_another_tenant_or_event(claims: dict[str, Any], realm: Realm) -> None:
    """Claims naming a tenant or event other than the realm's own are realm_mismatch."""
    assert identity_reason(claims, realm) is Reason.REALM_MISMATCH


def test_extra_realm_requires_tenant_claim() -> None:
    """A token from an extra realm must name its tenant; without it the claims are invalid."""
    claims = with_hasura("platform-admin", **{"x-hasura-tenant-id": None})
    assert identity_reason(claims, EXTRA) is Reason.CLAIMS_INVALID


def test_extra_realm_takes_tenant_from_claim() -> None:
    """A token from an extra realm gets the tenant it names."""
    claims = with_hasura("platform-admin", **{"x-hasura-tenant-id": OTHER_TENANT_ID})
    assert identity_from_claims(claims, EXTRA, FORBIDDEN).tenant_id == OTHER_TENANT_ID


def test_extra_realm_event_claim_taken_as_is() -> None:
    """An extra realm has no event of its own: an event claim is taken as the token states it."""
    claims = with_hasura("platform-admin", **{"x-hasura-event-id": OTHER_EVENT_ID})
    assert identity_from_claims(claims, EXTRA, FORBIDDEN).event_id == OTHER_EVENT_ID


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"x-hasura-allowed-roles": "admin-user"}, id="roles-string"),
        pytest.param({"x-hasura-allowed-roles": "admin-user,user"}, id="roles-csv-string"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", 5]}, id="roles-with-number"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", None]}, id="roles-with-null"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", ""]}, id="roles-with-empty"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", ["user"]]}, id="roles-nested-list"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", {"r": "user"}]}, id="roles-with-object"),
        pytest.param({"x-hasura-allowed-roles": ["admin-user", "r" * 257]}, id="role-too-long"),
        pytest.param({"x-hasura-allowed-roles": []}, id="roles-empty"),
        pytest.param({"x-hasura-allowed-roles": ["user"] * 1001}, id="too-many-roles"),
        pytest.param({"x-hasura-allowed-roles": {"admin-user": True}}, id="roles-object"),
        pytest.param({"x-hasura-allowed-roles": None}, id="roles-missing"),
        pytest.param({"x-hasura-default-role": None}, id="default-missing"),
        pytest.param({"x-hasura-default-role": ""}, id="default-empty"),
        pytest.param({"x-hasura-default-role": ["admin-user"]}, id="default-list"),
        pytest.param({"x-hasura-default-role": 1}, id="default-number"),
        pytest.param({"x-hasura-user-id": {"id": USER_ID}}, id="user-object"),
        pytest.param({"x-hasura-user-id": 42}, id="user-number"),
        pytest.param({"x-hasura-user-id": ""}, id="user-empty"),
        pytest.param({"x-hasura-tenant-id": {"id": TENANT_ID}}, id="tenant-object"),
        pytest.param({"x-hasura-tenant-id": [TENANT_ID]}, id="tenant-list"),
        pytest.param({"x-hasura-tenant-id": ""}, id="tenant-empty"),
        pytest.param({"x-hasura-event-id": 1}, id="event-number"),
    ],
)
def test_wrong_types_are_invalid(overrides: dict[str, Any]) -> None:
    """Hasura claims of the wrong type, empty or too large are claims_invalid (no TypeError)."""
    assert identity_reason(with_hasura(**overrides)) is Reason.CLAIMS_INVALID


def test_explicit_null_tenant_is_invalid() -> None:
    """An explicit null tenant claim is claims_invalid (not taken from the realm)."""
    claims = with_hasura()
    claims[HASURA]["x-hasura-tenant-id"] = None
    assert identity_reason(claims) is Reason.CLAIMS_INVALID


@pytest.mark.parametrize(
    "namespace",
    [None, "stringified", '{"x-hasura-default-role":"user"}', ["x"], 1],
)
def test_hasura_namespace_must_be_object(namespace: object) -> None:
    """A missing or non-object Hasura namespace is claims_invalid."""
    claims = keycloak_claims()
    if namespace is None:
        del claims[HASURA]
    else:
        claims[HASURA] = namespace
    assert identity_reason(claims) is Reason.CLAIMS_INVALID


def test_role_limits_accepted() -> None:
    """1000 roles and a 256-character role are still accepted."""
    roles = ["r" * 256, *(f"role-{i}" for i in range(999))]
    identity = make_identity(**{"x-hasura-allowed-roles": roles, "x-hasura-default-role": "role-0"})
    assert len(identity.allowed_roles) == 1000


def test_default_role_not_allowed() -> None:
    """A default role missing from the allowed roles is role_not_allowed."""
    assert identity_reason(with_hasura(**{"x-hasura-default-role": "superuser"})) is Reason.ROLE_NOT_ALLOWED


def test_forbidden_role_is_removed() -> None:
    """A forbidden role listed by the token is not among the identity's allowed roles."""
    identity = make_identity(**{"x-hasura-allowed-roles": [*ROLES, "admin"]})
    assert "admin" not in identity.allowed_roles
    assert identity.allowed_roles == frozenset(ROLES)


def test_forbidden_role_never_granted_on_request() -> None:
    """Requesting a forbidden role the token lists is role_not_allowed."""
    identity = make_identity(**{"x-hasura-allowed-roles": [*ROLES, "admin"]})
    with pytest.raises(Rejected) as info:
        choose_role(identity, "admin")
    assert info.value.reason is Reason.ROLE_NOT_ALLOWED


def test_forbidden_default_role_never_granted() -> None:
    """A forbidden default role is never used, even when no role is requested."""
    identity = make_identity(**{"x-hasura-allowed-roles": ["admin", "user"], "x-hasura-default-role": "admin"})
    with pytest.raises(Rejected) as info:
        choose_role(identity, None)
    assert info.value.reason is Reason.ROLE_NOT_ALLOWED
    assert choose_role(identity, "user") == "user"


# --- choose_role --------------------------------------------------------------------------------


@pytest.mark.parametrize("requested", ["user", "tenant-read", "admin-user"])
def test_choose_role_honours_allowed_request(requested: str) -> None:
    """An allowed requested role is granted as is."""
    assert choose_role(make_identity(), requested) == requested


@pytest.mark.parametrize("requested", [None, ""])
def test_choose_role_defaults(requested: str | None) -> None:
    """No requested role (None or empty) gives the default role."""
    assert choose_role(make_identity(), requested) == "admin-user"


@pytest.mark.parametrize("requested", ["superuser", "admin", "User", "user,admin", "ADMIN-USER"])
def test_choose_role_rejects_not_allowed(requested: str) -> None:
    """A requested role not allowed (exact case) is role_not_allowed, never a downgrade to the default."""
    with pytest.raises(Rejected) as info:
        choose_role(make_identity(), requested)
    assert info.value.reason is Reason.ROLE_NOT_ALLOWED
    assert "requested" in info.value.detail


# --- session_json / anonymous_session ------------------------------------------------------------


def answer(identity: Identity, role: str, now: float) -> dict[str, str]:
    """The session object Hasura receives (`session_json`, parsed)."""
    parsed: dict[str, str] = orjson.loads(session_json(identity, role, now))
    return parsed


def test_session_of_tenant_identity() -> None:
    """A tenant session holds role, user and tenant as strings, no event id."""
    identity = make_identity()
    session = answer(identity, "user", NOW)
    assert session == {
        "X-Hasura-Role": "user",
        "X-Hasura-User-Id": USER_ID,
        "X-Hasura-Tenant-Id": TENANT_ID,
        "Cache-Control": "max-age=240",
    }
    assert all(type(v) is str for v in session.values())


def test_session_of_event_identity() -> None:
    """An event session also carries X-Hasura-Event-Id."""
    identity = identity_from_claims(with_hasura(EVENT_REALM), EVENT, FORBIDDEN)
    session = answer(identity, "admin-user", NOW)
    assert session["X-Hasura-Event-Id"] == EVENT_ID
    assert all(type(v) is str for v in session.values())


@pytest.mark.parametrize(
    ("exp_offset", "max_age"),
    [(240, 240), (240.9, 240), (0.999, 0), (0, 0), (-5, 0), (-0.5, 0), (86400.5, 86400)],
)
def test_session_max_age(exp_offset: float, max_age: int) -> None:
    """Cache-Control max-age is floor(exp - now), never negative."""
    identity = identity_from_claims(keycloak_claims(exp=NOW + exp_offset), TENANT, FORBIDDEN)
    assert answer(identity, "user", NOW)["Cache-Control"] == f"max-age={max_age}"


def test_session_json_is_the_session_of_its_own_identity_role_and_second() -> None:
    """`session_json` (memoised) gives compact JSON of exactly that identity's session, in Hasura's
    member order, and never the bytes of another user, role, event or max-age: each of those is part
    of what it is keyed on (or, the max-age, rendered per answer)."""
    tenant, other_user = make_identity(), make_identity(**{"x-hasura-user-id": "someone-else"})
    event = identity_from_claims(with_hasura(EVENT_REALM), EVENT, FORBIDDEN)
    head = {"X-Hasura-Tenant-Id": TENANT_ID}
    cases = [
        (tenant, "user", NOW, {"X-Hasura-Role": "user", "X-Hasura-User-Id": USER_ID, **head}, 240),
        (tenant, "admin-user", NOW, {"X-Hasura-Role": "admin-user", "X-Hasura-User-Id": USER_ID, **head}, 240),
        (tenant, "user", NOW + 1.5, {"X-Hasura-Role": "user", "X-Hasura-User-Id": USER_ID, **head}, 238),
        (other_user, "user", NOW, {"X-Hasura-Role": "user", "X-Hasura-User-Id": "someone-else", **head}, 240),
        (
            event,
            "admin-user",
            NOW,
            {"X-Hasura-Role": "admin-user", "X-Hasura-User-Id": USER_ID, **head, "X-Hasura-Event-Id": EVENT_ID},
            240,
        ),
    ]
    for _ in range(2):  # the second pass is answered from the memo
        for identity, role, now, members, max_age in cases:
            assert session_json(identity, role, now) == orjson.dumps({**members, "Cache-Control": f"max-age={max_age}"})
    assert len({session_json(i, r, n) for i, r, n, _, _ in cases}) == len(cases)


def test_session_json_memo_is_bounded_and_keeps_one_entry_per_user_and_role() -> None:
    """A new max-age every second adds no entry; distinct users past the bound clear the memo."""
    module._SESSION_HEADS.clear()
    identity = make_identity()
    for offset in range(100):
        session_json(identity, "user", NOW - 86_400 + offset)
    assert len(module._SESSION_HEADS) == 1
    for n in range(module._MAX_SESSION_HEADS + 10):
        session_json(make_identity(**{"x-hasura-user-id": f"user-{n}"}), "user", NOW)
    assert 0 < len(module._SESSION_HEADS) <= module._MAX_SESSION_HEADS


def test_anonymous_session() -> None:
    """The anonymous session holds only the role."""
    assert anonymous_session("anonymous") == {"X-Hasura-Role": "anonymous"}
