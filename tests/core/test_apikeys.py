"""API keys, the pure parts: the `api_key` claim, the identity it yields, the client template, and
the actions' input and role rules."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from webhook.actions.apikey import check_roles, parse_expiry, parse_roles
from webhook.actions.auth import Caller
from webhook.actions.errors import ActionError
from webhook.core.apikeyclaim import ApiKeyClaim, api_key_claim, check_not_expired
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import identity_from_claims
from webhook.provisioning.apikeyclient import (
    ApiKeySpec,
    client_representation,
    is_api_key,
    key_info,
    name_problem,
)

from .conftest import HASURA, NOW, TENANT, TENANT_ID, hasura_claims, keycloak_claims

WHEN = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def _reason(claims: dict[str, Any]) -> Reason | None:
    try:
        api_key_claim(claims)
    except Rejected as exc:
        return exc.reason
    return None


# --- the api_key claim ------------------------------------------------------------------------------


def test_no_claim_is_a_user_token() -> None:
    """Without `api_key` the token is no API key's."""
    assert api_key_claim({"sub": "x"}) is None


def test_a_well_formed_claim_is_read() -> None:
    """name and exp are read; exp may be absent (the key never expires) or a digit string."""
    assert api_key_claim({"api_key": {"name": "erp", "exp": 1900000000}}) == ApiKeyClaim("erp", 1900000000.0)
    assert api_key_claim({"api_key": {"name": "erp"}}) == ApiKeyClaim("erp", None)
    assert api_key_claim({"api_key": {"name": "erp", "exp": "1900000000"}}) == ApiKeyClaim("erp", 1900000000.0)


@pytest.mark.parametrize(
    "value",
    [
        "erp",
        ["erp"],
        {},
        {"name": ""},
        {"name": 7},
        {"name": "x" * 257},
        {"name": "erp", "exp": "soon"},
        {"name": "erp", "exp": float("inf")},
        {"name": "erp", "exp": True},
    ],
)
def test_a_malformed_claim_is_claims_invalid(value: object) -> None:
    """A token that says it is an API key's but says it badly is refused."""
    assert _reason({"api_key": value}) == Reason.CLAIMS_INVALID


def test_expiry_is_checked_without_leeway() -> None:
    """At or after the key's expiry: api_key_expired; before it, or without expiry: fine."""
    check_not_expired(ApiKeyClaim("erp", NOW + 1), NOW)
    check_not_expired(ApiKeyClaim("erp", None), NOW)
    check_not_expired(None, NOW)
    with pytest.raises(Rejected) as caught:
        check_not_expired(ApiKeyClaim("erp", NOW), NOW)
    assert caught.value.reason == Reason.API_KEY_EXPIRED


def test_an_api_key_identity_says_so_and_ends_with_the_key() -> None:
    """kind api_key, the key's name, and exp = the earlier of the token's exp and the key's expiry."""
    claims = keycloak_claims(TENANT.name, **{HASURA: hasura_claims()})
    user = identity_from_claims(claims, TENANT, frozenset())
    assert (user.kind, user.api_key) == ("user", None)
    soon = float(claims["exp"]) - 100
    keyed = identity_from_claims({**claims, "api_key": {"name": "erp", "exp": soon}}, TENANT, frozenset())
    assert (keyed.kind, keyed.api_key, keyed.exp) == ("api_key", "erp", soon)
    later = identity_from_claims({**claims, "api_key": {"name": "erp", "exp": soon + 1e6}}, TENANT, frozenset())
    assert later.exp == float(claims["exp"])


# --- the client template ------------------------------------------------------------------------------


def _spec(**changes: Any) -> ApiKeySpec:
    values: dict[str, Any] = {
        "name": "erp-sync",
        "tenant_id": TENANT_ID,
        "roles": ("election-event-read", "tenant-read"),
        "expires_at": WHEN + dt.timedelta(days=30),
        "created_by": "user-1",
        "created_at": WHEN,
    }
    return ApiKeySpec(**{**values, **changes})


def _mappers(client: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in client["protocolMappers"]}


def test_the_client_is_confidential_with_service_accounts_only() -> None:
    """client id = name; client-secret auth; every browser/password flow off; full scope off; no URIs."""
    client = client_representation(_spec())
    assert client["clientId"] == "erp-sync" and client["publicClient"] is False
    assert client["clientAuthenticatorType"] == "client-secret" and client["serviceAccountsEnabled"] is True
    for flow in ("standardFlowEnabled", "implicitFlowEnabled", "directAccessGrantsEnabled", "fullScopeAllowed"):
        assert client[flow] is False, flow
    assert client["redirectUris"] == [] and client["webOrigins"] == []
    assert client["attributes"]["oauth2.device.authorization.grant.enabled"] == "false"
    assert "secret" not in client


def test_the_hasura_claims_are_hardcoded() -> None:
    """tenant, default role (the first), allowed roles (a JSON array) hardcoded; user id = the service account's."""
    mappers = _mappers(client_representation(_spec()))
    tenant = mappers["x-hasura-tenant-id"]["config"]
    assert mappers["x-hasura-tenant-id"]["protocolMapper"] == "oidc-hardcoded-claim-mapper"
    assert (
        tenant["claim.value"] == TENANT_ID
        and tenant["claim.name"] == "https://hasura\\.io/jwt/claims.x-hasura-tenant-id"
    )
    assert mappers["x-hasura-default-role"]["config"]["claim.value"] == "election-event-read"
    allowed = mappers["x-hasura-allowed-roles"]["config"]
    assert allowed["jsonType.label"] == "JSON"
    assert json.loads(allowed["claim.value"]) == ["election-event-read", "tenant-read"]
    user = mappers["x-hasura-user-id"]
    assert user["protocolMapper"] == "oidc-usermodel-property-mapper" and user["config"]["user.attribute"] == "id"
    assert mappers["api_key.name"]["config"]["claim.value"] == "erp-sync"
    expiry = mappers["api_key.exp"]["config"]
    assert expiry["jsonType.label"] == "long" and expiry["claim.value"] == str(
        int((WHEN + dt.timedelta(days=30)).timestamp())
    )


def test_no_expiry_mapper_without_expiry_and_audiences_when_configured() -> None:
    """A key that never expires has no api_key.exp mapper; ALLOWED_AUDIENCES adds one audience mapper each."""
    mappers = _mappers(client_representation(_spec(expires_at=None)))
    assert "api_key.exp" not in mappers and not any(
        m["protocolMapper"] == "oidc-audience-mapper" for m in mappers.values()
    )
    with_audiences = _mappers(client_representation(_spec(), ["hasura", "account"]))
    assert with_audiences["audience hasura"]["config"]["included.custom.audience"] == "hasura"
    assert with_audiences["audience account"]["protocolMapper"] == "oidc-audience-mapper"


def test_the_client_is_marked_and_read_back() -> None:
    """The attributes mark it as a key and give back roles, expiry and creator; other clients are not keys."""
    client = client_representation(_spec())
    assert is_api_key(client) and not is_api_key({"clientId": "admin-portal", "attributes": {}})
    info = key_info(client)
    assert info.name == "erp-sync" and info.roles == ("election-event-read", "tenant-read")
    assert info.expires_at == WHEN + dt.timedelta(days=30) and info.created_by == "user-1" and info.enabled
    assert info.as_output()["expires_at"] == "2026-12-31T10:00:00+00:00"
    assert key_info({"clientId": "x", "attributes": {"election.api-key.roles": "not json"}}).roles == ()


@pytest.mark.parametrize(
    "name", ["ab", "-erp", "erp-", "ERP", "erp_sync", "e" * 64, "admin-portal", "realm-management"]
)
def test_bad_or_reserved_names_are_refused(name: str) -> None:
    """Names: 3-63 of [a-z0-9] and inner '-', never one of the realm's own clients."""
    assert name_problem(name) is not None


def test_good_names_pass() -> None:
    """Ordinary names are accepted."""
    assert name_problem("erp-sync") is None and name_problem("abc") is None and name_problem("a" * 63) is None


# --- the actions' input and role rules ---------------------------------------------------------------


def test_roles_are_a_bounded_list_of_names() -> None:
    """1-50 non-empty strings, duplicates dropped (order kept); anything else is a problem."""
    problems: dict[str, str] = {}
    assert parse_roles(["b", "a", "b"], problems) == ("b", "a") and problems == {}
    for bad in (None, "a", [], ["a", ""], ["a", 3], ["r"] * 51):
        problems = {}
        assert parse_roles(bad, problems) == () and "roles" in problems, bad


def test_expiry_is_a_future_zoned_timestamp() -> None:
    """ISO 8601 with a zone, in the future; naive, past, malformed or non-string values are problems."""
    problems: dict[str, str] = {}
    assert parse_expiry("2027-01-01T00:00:00Z", WHEN, problems) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert parse_expiry(None, WHEN, problems) is None and problems == {}
    for bad in ("2027-01-01T00:00:00", "2026-01-01T00:00:00Z", "tomorrow", 1900000000):
        problems = {}
        assert parse_expiry(bad, WHEN, problems) is None and "expires_at" in problems, bad


def test_roles_must_be_the_callers_and_never_forbidden_or_platform() -> None:
    """A role outside the caller's allowed roles, or a never-granted one even if allowed, is forbidden."""
    identity = identity_from_claims(keycloak_claims(TENANT.name, **{HASURA: hasura_claims()}), TENANT, frozenset())
    caller = Caller(identity, identity.default_role, "0" * 64)
    allowed = sorted(identity.allowed_roles)[:2]
    check_roles(caller, tuple(allowed), frozenset({"admin"}))
    with pytest.raises(ActionError) as caught:
        check_roles(caller, ("not-a-role-of-the-caller",), frozenset())
    assert caught.value.code.value == "forbidden"
    with pytest.raises(ActionError):
        check_roles(caller, (allowed[0],), frozenset({allowed[0]}))
