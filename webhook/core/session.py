"""Hasura sessions: verified claims + realm -> identity; identity + requested role -> session. Pure.

Rules of this module:
- Input claims are already verified (signature, issuer, time). This module checks *shape* and
  *agreement*: the Hasura claims are present and well typed, and the tenant/event they name is the
  realm's own (claim absent -> taken from the realm; an extra realm's token must name its tenant).
- Roles come only from the verified token. A requested role is honoured only if allowed; never a
  silent downgrade. Roles in `forbidden_roles` (default `admin`) are never granted.
- The session is a JSON object of strings only; `Cache-Control: max-age=N` tells Hasura when the token
  expires so it closes websockets then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from webhook.core.apikeyclaim import KIND_API_KEY, KIND_USER, api_key_claim
from webhook.core.powers import Power
from webhook.core.realms import Realm
from webhook.core.reasons import Reason, Rejected

HASURA_NAMESPACE: Final = "https://hasura.io/jwt/claims"
CLAIM_TENANT: Final = "x-hasura-tenant-id"
CLAIM_EVENT: Final = "x-hasura-event-id"
CLAIM_USER: Final = "x-hasura-user-id"
CLAIM_DEFAULT_ROLE: Final = "x-hasura-default-role"
CLAIM_ALLOWED_ROLES: Final = "x-hasura-allowed-roles"
MAX_ROLES: Final = 1000
MAX_VALUE_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for. Cacheable: nothing here depends on the request."""

    realm: Realm
    user_id: str
    tenant_id: str
    event_id: str | None
    default_role: str
    allowed_roles: frozenset[str]
    exp: float  # the token's exp, or the API key's expiry when that comes first
    # what revocation checks need (webhook.revocation.active): the token's own `sid`, `sub` and `iat`
    sid: str | None = None
    sub: str | None = None
    iat: float | None = None
    #: What the realm's kind allows (`webhook/core/powers.py`), attached by the verifier.
    powers: frozenset[Power] = frozenset()
    kind: str = KIND_USER  # "api_key" for tokens of an API key (claim `api_key`)
    api_key: str | None = None  # the API key's name


def _string(value: object, name: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_VALUE_CHARS:
        raise Rejected(Reason.CLAIMS_INVALID, f"{name} is not a non-empty string")
    return value


# (listed roles, forbidden roles) -> (listed role -> its shared str, granted = listed - forbidden)
_ROLE_SETS: dict[tuple[tuple[str, ...], frozenset[str]], tuple[dict[str, str], frozenset[str]]] = {}
_MAX_ROLE_SETS: Final = 4096


def _role_set(roles: list[Any], forbidden: frozenset[str]) -> tuple[dict[str, str], frozenset[str]]:
    """The validated role list (as a lookup table of shared strings) and the roles it grants.

    Most users of a realm carry one of a few role lists (Keycloak tokens list ~60 roles): sharing
    the granted frozenset (the difference with the forbidden roles included: computing it per token
    made a new ~2.3 KB set for every cached identity) saves the per-role checks and most of a cached
    identity's memory. A hit implies the list is valid: it compares equal, element by element, to a
    list that was validated.
    """
    key = (tuple(roles), forbidden)
    try:
        cached = _ROLE_SETS.get(key)
    except TypeError:  # an unhashable member (object, list): not a role
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM_ALLOWED_ROLES} holds a non-string") from None
    if cached is not None:
        return cached
    listed = {role: role for role in (_string(role, CLAIM_ALLOWED_ROLES) for role in roles)}
    if len(_ROLE_SETS) >= _MAX_ROLE_SETS:
        _ROLE_SETS.clear()
    entry = _ROLE_SETS[key] = (listed, frozenset(listed) - forbidden)
    return entry


_WITHOUT: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] = {}


def without_roles(roles: frozenset[str], removed: frozenset[str]) -> frozenset[str]:
    """`roles - removed`, shared like the role sets: computing it per token would give every cached
    identity its own copy of a ~60-role set (~1 KB each)."""
    key = (roles, removed)
    cached = _WITHOUT.get(key)
    if cached is None:
        if len(_WITHOUT) >= _MAX_ROLE_SETS:
            _WITHOUT.clear()
        cached = _WITHOUT[key] = roles - removed
    return cached


def identity_from_claims(
    claims: Mapping[str, Any],
    realm: Realm,
    forbidden_roles: frozenset[str],
    *,
    powers: frozenset[Power] = frozenset(),
    dropped_roles: frozenset[str] = frozenset(),
) -> Identity:
    """The identity of verified `claims` from `realm`; `Rejected` if the Hasura claims are unusable.

    `powers` are attached as given; `dropped_roles` are left out of the allowed roles after the
    default-role check (the verifier's platform roles for realms without the power: built here in
    one go, since a `dataclasses.replace` afterwards cost ~3 % of a cold request).
    """
    namespace = claims.get(HASURA_NAMESPACE)
    if type(namespace) is not dict:
        raise Rejected(Reason.CLAIMS_INVALID, f"{HASURA_NAMESPACE} is missing or not an object")

    roles = namespace.get(CLAIM_ALLOWED_ROLES)
    if type(roles) is not list or not roles or len(roles) > MAX_ROLES:
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM_ALLOWED_ROLES} is not a non-empty list")
    listed, granted = _role_set(roles, forbidden_roles)
    if dropped_roles:
        granted = without_roles(granted, dropped_roles)
    default_role = listed.get(_string(namespace.get(CLAIM_DEFAULT_ROLE), CLAIM_DEFAULT_ROLE))
    if default_role is None:  # (the shared string: one object per realm role, not one per token)
        raise Rejected(Reason.ROLE_NOT_ALLOWED, f"{CLAIM_DEFAULT_ROLE} is not in {CLAIM_ALLOWED_ROLES}")

    if CLAIM_USER in namespace:
        user_id = _string(namespace[CLAIM_USER], CLAIM_USER)
    else:
        user_id = _string(claims.get("sub"), "sub")

    if CLAIM_TENANT in namespace:
        tenant_id = _string(namespace[CLAIM_TENANT], CLAIM_TENANT)
        if realm.tenant_id is not None and tenant_id != realm.tenant_id:
            raise Rejected(Reason.REALM_MISMATCH, f"{CLAIM_TENANT} is not the realm's tenant")
        tenant_id = realm.tenant_id or tenant_id  # the realm's string, shared by its cached identities
    elif realm.tenant_id is not None:
        tenant_id = realm.tenant_id
    else:
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM_TENANT} is required for realm {realm.name!r}")

    event_id: str | None = None
    if CLAIM_EVENT in namespace:
        event_id = _string(namespace[CLAIM_EVENT], CLAIM_EVENT)
        if realm.tenant_id is not None and event_id != realm.event_id:
            raise Rejected(Reason.REALM_MISMATCH, f"{CLAIM_EVENT} is not the realm's event")
        event_id = realm.event_id or event_id
    elif realm.event_id is not None:
        event_id = realm.event_id

    exp = float(claims["exp"])  # checked numeric and finite by token.check_claims
    sid, sub, iat = claims.get("sid"), claims.get("sub"), claims.get("iat")  # iat: numeric or absent (check_claims)
    kind, key_name = KIND_USER, None
    key = api_key_claim(claims)
    if key is not None:
        kind, key_name = KIND_API_KEY, key.name
        if key.expires_at is not None:
            exp = min(exp, key.expires_at)  # caches and Hasura's max-age end with the key
    return Identity(
        realm,
        user_id,
        tenant_id,
        event_id,
        default_role,
        granted,
        exp,
        sid if type(sid) is str else None,
        sub if type(sub) is str else None,
        float(iat) if iat is not None else None,
        powers,
        kind=kind,
        api_key=key_name,
    )


def choose_role(identity: Identity, requested: str | None) -> str:
    """The requested role if allowed, else the default; `Rejected(role_not_allowed)` otherwise."""
    role = requested.strip() if requested else ""
    role = role or identity.default_role
    if role not in identity.allowed_roles:
        raise Rejected(
            Reason.ROLE_NOT_ALLOWED,
            "requested role is not allowed" if requested else "default role is not allowed",
        )
    return role


# (role, user id, tenant id, event id) -> the session's JSON up to its Cache-Control member: everything
# those bytes depend on is in the key, so an entry can never answer for anyone else, and the max-age
# (a new value every second) is spliced per answer instead of keyed, so the memo holds one entry per
# user and role. The strings are the identity's own (their hashes are cached on them), so a lookup
# costs a small tuple; rendering the session costs ~1.3 us of a ~58 us warm request. Bounded (cleared
# when full), like the role sets. The head is sliced out of orjson's output, which is a new bytes of
# its own size: orjson returns bytes with a 4 KB allocation, which a memo must not keep.
_SESSION_HEADS: dict[tuple[str, str, str, str | None], bytes] = {}
_MAX_SESSION_HEADS: Final = 8192


def session_json(identity: Identity, role: str, now: float) -> bytes:
    """The Hasura session answer as the JSON bytes Hasura gets: string values only, with a max-age
    up to the token's expiry (`Cache-Control`, last), from a memo of what they depend on (see above)."""
    key = (role, identity.user_id, identity.tenant_id, identity.event_id)
    head = _SESSION_HEADS.get(key)
    if head is None:
        if len(_SESSION_HEADS) >= _MAX_SESSION_HEADS:
            _SESSION_HEADS.clear()
        members = {
            "X-Hasura-Role": role,
            "X-Hasura-User-Id": identity.user_id,
            "X-Hasura-Tenant-Id": identity.tenant_id,
        }
        if identity.event_id is not None:
            members["X-Hasura-Event-Id"] = identity.event_id
        head = _SESSION_HEADS[key] = orjson.dumps(members)[:-1] + b","  # open for Cache-Control
    return b'%s"Cache-Control":"max-age=%d"}' % (head, max(0, math.floor(identity.exp - now)))


def anonymous_session(role: str) -> dict[str, str]:
    """The session for a request without any token when anonymous access is configured."""
    return {"X-Hasura-Role": role}
