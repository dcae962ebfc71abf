"""Every reason code, and every forged-token row of threats.md this issue covers, over real HTTP.

Each case asserts: 401, the reason in the body, metrics and audit; and that nothing was fetched
from any host but the configured Keycloak (the attacker host must see zero requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from tests.auth.conftest import OTHER_TENANT, Stack, StackFactory, bearer, random_uuid
from webhook.core.reasons import Reason
from webhook.testing.keycloak import DROP, attacker_key, sign_raw

pytestmark = pytest.mark.anyio
Headers = dict[str, str] | list[tuple[str, str]]


@dataclass(frozen=True)
class Case:
    """One rejected request: how to build it, what it must be rejected for, under which settings."""

    name: str
    reason: Reason
    build: Callable[[Stack], Headers]
    env: dict[str, str] = field(default_factory=dict)


def mint(**kwargs: Any) -> Callable[[Stack], Headers]:
    def build(stack: Stack) -> Headers:
        return bearer(stack.keycloak.mint(stack.tenant.name, **kwargs))

    return build


def _payload(token: str) -> bytes:
    import base64

    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def kid_of(stack: Stack) -> str:
    return stack.tenant.active_kid


NOW = int(time.time())


def _keycloak_down(stack: Stack) -> Headers:
    stack.keycloak.set_behaviour("down", stack.other.name)
    return bearer(stack.keycloak.mint(stack.other.name, kid=stack.other.signing_kids[1]))


def _duplicate_alg(stack: Stack) -> str:
    token = stack.keycloak.mint(stack.tenant.name)
    header = b'{"alg":"none","alg":"RS256","typ":"JWT","kid":"' + kid_of(stack).encode() + b'"}'
    import base64

    head = base64.urlsafe_b64encode(header).rstrip(b"=").decode()
    return ".".join([head, *token.split(".")[1:]])


def _with_url_header(stack: Stack, name: str) -> Headers:
    return bearer(stack.keycloak.mint(stack.tenant.name, header={name: stack.attacker.jwks_url}))


def _embedded_jwk(stack: Stack) -> Headers:
    key = attacker_key("ES256")
    jwk = dict(key.as_dict(private=False))
    return bearer(
        stack.keycloak.mint(stack.tenant.name, header={"jwk": jwk, "alg": "ES256"}, signing_key=key, alg="ES256")
    )


def _unsigned(stack: Stack, alg: str) -> Headers:
    payload = orjson.loads(_payload(stack.keycloak.mint(stack.tenant.name)))
    return bearer(sign_raw({"alg": alg, "typ": "JWT", "kid": kid_of(stack)}, payload, None, alg="none") + "AAAA")


def _key_confusion(stack: Stack) -> Headers:
    payload = orjson.loads(_payload(stack.keycloak.mint(stack.tenant.name)))
    pem = stack.tenant.public_key_pem()
    return bearer(sign_raw({"alg": "HS256", "typ": "JWT", "kid": kid_of(stack)}, payload, pem, alg="HS256"))


def _iss(stack: Stack, iss: str) -> Headers:
    return bearer(stack.keycloak.mint(stack.tenant.name, claims={"iss": iss}))


def _alg_swap(stack: Stack) -> Headers:
    es_kid = stack.other.signing_kids[0]
    token = stack.keycloak.mint(stack.other.name, kid=es_kid, header={"alg": "RS256"}, alg="ES256")
    return bearer(token)


def _tamper(stack: Stack) -> str:
    import base64

    head, _, sig = stack.keycloak.mint(stack.tenant.name).split(".")
    payload = orjson.loads(_payload(stack.keycloak.mint(stack.tenant.name)))
    payload["https://hasura.io/jwt/claims"]["x-hasura-default-role"] = "support-material-write"
    body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


def _psychic(stack: Stack) -> Headers:
    token = stack.keycloak.mint(stack.other.name, kid=stack.other.signing_kids[0])
    head, body, _ = token.split(".")
    return bearer(f"{head}.{body}.{'A' * 86}")


CASES = [
    Case("no token", Reason.MISSING_TOKEN, lambda s: {}),
    Case("not a JWS", Reason.MALFORMED_TOKEN, lambda s: bearer("not-a-token")),
    Case("basic auth", Reason.MALFORMED_TOKEN, lambda s: {"Authorization": "Basic dXNlcjpwYXNz"}),
    Case("empty bearer", Reason.MALFORMED_TOKEN, lambda s: {"Authorization": "Bearer"}),
    Case("JWE 5 parts", Reason.MALFORMED_TOKEN, lambda s: bearer("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d")),
    Case("oversize token", Reason.MALFORMED_TOKEN, lambda s: bearer("a" * 20000 + ".b.c")),
    Case("padded base64", Reason.MALFORMED_TOKEN, lambda s: bearer(s.keycloak.mint(s.tenant.name) + "=")),
    Case(
        "two Authorization headers",
        Reason.MALFORMED_TOKEN,
        lambda s: [
            ("Authorization", f"Bearer {s.keycloak.mint(s.tenant.name)}"),
            ("authorization", f"Bearer {s.keycloak.mint(s.tenant.name)}"),
        ],
    ),
    Case("duplicate alg in header", Reason.MALFORMED_TOKEN, lambda s: bearer(_duplicate_alg(s))),
    Case("jku header", Reason.HEADER_NOT_ALLOWED, lambda s: _with_url_header(s, "jku")),
    Case("x5u header", Reason.HEADER_NOT_ALLOWED, lambda s: _with_url_header(s, "x5u")),
    Case("embedded jwk", Reason.HEADER_NOT_ALLOWED, _embedded_jwk),
    Case(
        "crit header",
        Reason.HEADER_NOT_ALLOWED,
        lambda s: bearer(s.keycloak.mint(s.tenant.name, header={"crit": ["exp"]})),
    ),
    Case(
        "b64 false", Reason.HEADER_NOT_ALLOWED, lambda s: bearer(s.keycloak.mint(s.tenant.name, header={"b64": False}))
    ),
    Case(
        "nested JWT cty",
        Reason.HEADER_NOT_ALLOWED,
        lambda s: bearer(s.keycloak.mint(s.tenant.name, header={"cty": "JWT"})),
    ),
    Case("alg none", Reason.ALG_NOT_ALLOWED, lambda s: _unsigned(s, "none")),
    Case("alg nOnE", Reason.ALG_NOT_ALLOWED, lambda s: _unsigned(s, "nOnE")),
    Case("alg rs256 lowercase", Reason.ALG_NOT_ALLOWED, lambda s: _unsigned(s, "rs256")),
    Case("HS256 with the public key as secret", Reason.ALG_NOT_ALLOWED, _key_confusion),
    Case("iss at attacker host", Reason.UNKNOWN_ISSUER, lambda s: _iss(s, f"{s.attacker.url}/realms/{s.tenant.name}")),
    Case(
        "iss path traversal",
        Reason.UNKNOWN_ISSUER,
        lambda s: _iss(s, f"{s.keycloak.url}/realms/../realms/{s.tenant.name}"),
    ),
    Case(
        "iss percent-encoded",
        Reason.UNKNOWN_ISSUER,
        lambda s: _iss(s, f"{s.keycloak.url}/realms/%2e%2e/{s.tenant.name}"),
    ),
    Case("iss with query", Reason.UNKNOWN_ISSUER, lambda s: _iss(s, f"{s.keycloak.url}/realms/{s.tenant.name}?x=1")),
    Case("iss with fragment", Reason.UNKNOWN_ISSUER, lambda s: _iss(s, f"{s.keycloak.url}/realms/{s.tenant.name}#x")),
    Case(
        "iss with userinfo",
        Reason.UNKNOWN_ISSUER,
        lambda s: _iss(s, s.keycloak.url.replace("//", "//evil@") + f"/realms/{s.tenant.name}"),
    ),
    Case("iss untrusted realm", Reason.UNKNOWN_ISSUER, lambda s: _iss(s, f"{s.keycloak.url}/realms/master")),
    Case(
        "iss unicode",
        Reason.UNKNOWN_ISSUER,
        lambda s: _iss(s, f"{s.keycloak.url}/realms/tenant-\u0661" + s.tenant.name[8:]),
    ),
    Case("iss very long", Reason.UNKNOWN_ISSUER, lambda s: _iss(s, f"{s.keycloak.url}/realms/" + "a" * 600)),
    Case("iss missing", Reason.UNKNOWN_ISSUER, mint(claims={"iss": DROP})),
    Case(
        "realm does not exist",
        Reason.UNKNOWN_REALM,
        lambda s: _iss(s, f"{s.keycloak.url}/realms/tenant-{random_uuid()}"),
    ),
    Case("Keycloak down, realm never loaded", Reason.JWKS_UNAVAILABLE, _keycloak_down),
    Case("kid unknown", Reason.UNKNOWN_KID, mint(header={"kid": "no-such-kid"})),
    Case("kid injection", Reason.UNKNOWN_KID, mint(header={"kid": "../../etc/passwd'; DROP TABLE x;--$(id)"})),
    Case("kid missing", Reason.UNKNOWN_KID, mint(header={"kid": DROP})),
    Case(
        "signed by the enc key",
        Reason.UNKNOWN_KID,
        lambda s: bearer(s.keycloak.mint(s.tenant.name, kid=s.tenant.enc_kid)),
    ),
    Case(
        "RS256 header on an ES256 key",
        Reason.KEY_MISMATCH,
        _alg_swap,
        {"ALLOWED_ALGORITHMS": "RS256,ES256"},
    ),
    Case("attacker's key with real kid", Reason.BAD_SIGNATURE, mint(signing_key=attacker_key())),
    Case("tampered payload", Reason.BAD_SIGNATURE, lambda s: bearer(_tamper(s))),
    Case(
        "signature stripped to one byte",
        Reason.BAD_SIGNATURE,
        lambda s: bearer(s.keycloak.mint(s.tenant.name).rsplit(".", 1)[0] + ".AA"),
    ),
    Case("psychic ECDSA r=s=0", Reason.BAD_SIGNATURE, _psychic, {"ALLOWED_ALGORITHMS": "RS256,ES256"}),
    Case("expired", Reason.EXPIRED, mint(now=NOW - 1000, lifetime=300)),
    Case("expired beyond leeway", Reason.EXPIRED, mint(now=NOW - 331, lifetime=300)),
    Case(
        "nbf in future",
        Reason.NOT_YET_VALID,
        lambda s: bearer(s.keycloak.mint(s.tenant.name, claims={"nbf": int(time.time()) + 600})),
    ),
    Case(
        "iat far in future",
        Reason.NOT_YET_VALID,
        lambda s: bearer(s.keycloak.mint(s.tenant.name, now=int(time.time()) + 3600)),
    ),
    Case("ID token", Reason.WRONG_TOKEN_TYPE, mint(typ="ID")),
    Case("refresh token typ", Reason.WRONG_TOKEN_TYPE, mint(typ="Refresh")),
    Case("typ missing", Reason.WRONG_TOKEN_TYPE, mint(claims={"typ": DROP})),
    Case("audience not allowed", Reason.AUDIENCE_NOT_ALLOWED, mint(), {"ALLOWED_AUDIENCES": "hasura"}),
    Case("azp not allowed", Reason.AZP_NOT_ALLOWED, mint(azp="evil-client"), {"ALLOWED_AZP": "admin-portal"}),
    Case("exp missing", Reason.CLAIMS_INVALID, mint(claims={"exp": DROP})),
    Case("exp a string", Reason.CLAIMS_INVALID, mint(claims={"exp": "9999999999"})),
    Case("hasura claims missing", Reason.CLAIMS_INVALID, mint(claims={"https://hasura.io/jwt/claims": DROP})),
    Case("roles as a string", Reason.CLAIMS_INVALID, mint(hasura_claims={"x-hasura-allowed-roles": "admin-user"})),
    Case(
        "roles with a number", Reason.CLAIMS_INVALID, mint(hasura_claims={"x-hasura-allowed-roles": ["admin-user", 7]})
    ),
    Case("user id nested object", Reason.CLAIMS_INVALID, mint(hasura_claims={"x-hasura-user-id": {"id": 1}})),
    Case("default role missing", Reason.CLAIMS_INVALID, mint(hasura_claims={"x-hasura-default-role": DROP})),
    Case(
        "tenant claim of another tenant",
        Reason.REALM_MISMATCH,
        mint(hasura_claims={"x-hasura-tenant-id": OTHER_TENANT}),
    ),
    Case(
        "event claim on a tenant realm", Reason.REALM_MISMATCH, mint(hasura_claims={"x-hasura-event-id": random_uuid()})
    ),
    Case(
        "role not allowed",
        Reason.ROLE_NOT_ALLOWED,
        lambda s: {**bearer(s.keycloak.mint(s.tenant.name)), "X-Hasura-Role": "root"},
    ),
    Case("default role not in allowed", Reason.ROLE_NOT_ALLOWED, mint(default_role="superuser")),
    Case("API key expired", Reason.API_KEY_EXPIRED, mint(claims={"api_key": {"name": "erp", "exp": NOW - 1}})),
    Case("API key claim not an object", Reason.CLAIMS_INVALID, mint(claims={"api_key": "erp"})),
    Case("API key expiry a word", Reason.CLAIMS_INVALID, mint(claims={"api_key": {"name": "erp", "exp": "soon"}})),
]


#: Covered over real HTTP with revocations on (a database) in tests/revocation/: session_revoked by the hook,
#: token_replayed by the back-channel logout endpoint only.
REVOCATION_REASONS = {Reason.SESSION_REVOKED, Reason.TOKEN_REPLAYED}


def test_every_reason_has_a_case() -> None:
    """The table below covers every member of Reason (the revocation reasons: tests/revocation/)."""
    assert {case.reason for case in CASES} == set(Reason) - REVOCATION_REASONS


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_rejected_with_reason(make_stack: StackFactory, case: Case, mode: str) -> None:
    """The request is a 401 with the case's reason in the body, the metrics and the audit, and no foreign fetch."""
    async with make_stack(**case.env) as stack:
        headers = case.build(stack)
        verdict = await stack.hasura(mode).authenticate(headers)
        assert verdict.hook_status == 401, verdict.hook_body
        assert verdict.outcome == "access-denied"
        assert orjson.loads(verdict.hook_body)["reason"] == case.reason.value
        assert stack.rejections(case.reason.value) == 1
        assert [r.reason for r in stack.audit.records] == [case.reason]
        assert stack.attacker.hits == []
        foreign = [path for _, path in stack.keycloak.requests if not path.startswith("/realms/tenant-")]
        assert foreign == []
