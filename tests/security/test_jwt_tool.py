"""What a JWT attack tool (jwt_tool's playbook) tries beyond the threats table, each with the full
rejection contract of `AdversarialStack.expect_rejected` (401 + reason, no outbound request but the
configured realms' certs, nothing to the attacker host, an audit row)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.security.forge import compact_json, header_of, parts, payload_of, signed_bytes, with_signature
from tests.security.support import AdversarialStack, Mode, b64url, bearer
from webhook.testing.keycloak import FakeRealm, sign_raw

pytestmark = pytest.mark.anyio


def _secrets_of(realm: FakeRealm, jwk: dict[str, Any]) -> dict[str, bytes]:
    """Every encoding of a published public key an attacker might try as an HMAC secret."""
    public = serialization.load_pem_public_key(realm.public_key_pem(jwk["kid"]))
    spki_pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forms = {
        "spki-pem": spki_pem,
        "spki-pem-no-newline": spki_pem.rstrip(b"\n"),
        "spki-der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk-as-published": json.dumps(jwk).encode(),
        "jwk-compact": compact_json(jwk),
    }
    if jwk["kty"] == "RSA":
        forms["pkcs1-pem"] = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return forms


async def test_key_confusion_with_every_published_key(sec: AdversarialStack) -> None:
    """HS256/384/512 keyed with every published key of every realm (sig and enc, RSA and EC, every
    encoding): alg_not_allowed, and nothing fetched. The same HMAC under an `RS256` header is a bad
    signature: the allow-list, not the key type, is what stops HS*."""
    tried = 0
    for realm in (sec.tenant, sec.other, sec.event):
        token = sec.keycloak.mint(realm.name)
        header, payload = header_of(token), payload_of(token)
        for jwk in realm.jwks()["keys"]:
            for form, secret in _secrets_of(realm, dict(jwk)).items():
                for alg in ("HS256", "HS384", "HS512"):
                    forged = sign_raw({**header, "alg": alg, "kid": jwk["kid"]}, payload, secret, alg=alg)
                    await sec.expect_rejected(bearer(forged), "alg_not_allowed", modes=("GET",))
                    tried += 1
                if form == "spki-pem":
                    hmac_under_rs256 = sign_raw(
                        {**header, "alg": "RS256", "kid": jwk["kid"]}, payload, secret, alg="HS256"
                    )
                    expected = "bad_signature" if jwk["use"] == "sig" else "unknown_kid"
                    if jwk["use"] == "sig" and jwk["alg"] != "RS256":
                        expected = "key_mismatch"
                    await sec.expect_rejected(bearer(hmac_under_rs256), expected, modes=("GET",), fetches=1)
    assert tried >= 7 * 5 * 3


@pytest.mark.parametrize(
    "alg",
    [
        *("none", "None", "NONE", "nOnE", "none ", " none", "", "RS256 ", "rs256", "Rs256", "HS256", "hs256"),
        *("ES256K", "RSA-OAEP", "EdDSA", "PS256", "RS1", "none\u0000"),
    ],
)
async def test_alg_case_tricks(sec: AdversarialStack, alg: str) -> None:
    """The allow-list is compared exactly: no case folding, trimming or aliases."""
    token = sec.keycloak.mint(sec.fresh_realm().name)
    forged = sign_raw({**header_of(token), "alg": alg}, payload_of(token), None, alg="none") + parts(token)[2]
    await sec.expect_rejected(bearer(forged), "alg_not_allowed", fetches=0)


async def test_jku_x5u_jwk_at_attacker_host_all_at_once(sec: AdversarialStack) -> None:
    """Every key-locating header pointing at the attacker, signed by the attacker's key, the realm's own
    kid or the attacker's: refused, and the attacker host sees nothing at all."""
    realm = sec.fresh_realm()
    for kid in (realm.active_kid, sec.attacker.kid):
        for header in (
            {"jku": sec.attacker.jwks_url, "kid": kid},
            {"x5u": f"{sec.attacker.url}/cert.pem", "kid": kid},
            {"jku": f"{sec.keycloak.url}/realms/{realm.name}/protocol/openid-connect/certs#@{sec.attacker.url}"},
            {"jwk": {"kty": "oct", "k": "c2VjcmV0"}, "alg": "HS256"},
        ):
            token = sec.keycloak.mint(realm.name, header=header, signing_key=sec.attacker.key)
            await sec.expect_rejected(bearer(token), "header_not_allowed", fetches=0, modes=("GET",))
    assert sec.attacker.hits == []


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no-signature-segment", "malformed_token"),
        ("empty-signature", "malformed_token"),
        ("empty-payload", "malformed_token"),
        ("signature-of-another-token", "bad_signature"),
        ("same-claims-signed-by-another-realm", "bad_signature"),
        ("header-payload-swapped", "malformed_token"),
    ],
)
async def test_signature_stripping(sec: AdversarialStack, case: str, reason: str) -> None:
    """Removing, emptying or transplanting a signature never yields a session."""
    token = sec.keycloak.mint(sec.tenant.name)
    head, body, sig = parts(token)
    forged = {
        "no-signature-segment": f"{head}.{body}",
        "empty-signature": f"{head}.{body}.",
        "empty-payload": f"{head}..{sig}",
        "signature-of-another-token": with_signature(token, parts(sec.keycloak.mint(sec.tenant.name))[2]),
        "same-claims-signed-by-another-realm": sign_raw(
            header_of(token), payload_of(token), sec.event.private_key(), alg="RS256"
        ),
        "header-payload-swapped": f"{body}.{head}.{sig}",
    }[case]
    await sec.expect_rejected(bearer(forged), reason)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("overlong-utf8-dot", "malformed_token"),
        ("invalid-utf8", "malformed_token"),
        ("lone-surrogate", "malformed_token"),
        ("utf8-bom", "malformed_token"),
        ("deep-nesting", "malformed_token"),
        ("huge-integer", "malformed_token"),
        ("lookalike-role-requested", "role_not_allowed"),
        ("lookalike-default-role", "role_not_allowed"),
    ],
)
async def test_unicode_and_overlong_inputs(sec: AdversarialStack, case: str, reason: str) -> None:
    """Genuinely signed payloads with broken or deceptive encodings: 401, never a 500."""
    token = sec.keycloak.mint(sec.tenant.name)
    header, payload = compact_json(header_of(token)), compact_json(payload_of(token))
    extra: list[tuple[str, str]] = []
    if case == "overlong-utf8-dot":
        payload = payload[:-1] + b',"note":"\xc0\xae\xc0\xae/"}'
    elif case == "invalid-utf8":
        payload = payload[:-1] + b',"note":"\xff\xfe"}'
    elif case == "lone-surrogate":
        payload = payload[:-1] + b',"sub":"\\ud800"}'
    elif case == "utf8-bom":
        payload = b"\xef\xbb\xbf" + payload
    elif case == "deep-nesting":
        payload = payload[:-1] + b',"n":' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif case == "huge-integer":
        payload = payload.replace(b'"exp":', b'"exp":1' + b"0" * 400 + b',"x":', 1)
    elif case == "lookalike-role-requested":
        extra = [("X-Hasura-Role", "\u0430dmin-user")]  # Cyrillic a
    else:
        payload = payload.replace(
            b'"x-hasura-default-role":"admin-user"', '"x-hasura-default-role":"\u0430dmin-user"'.encode()
        )
    forged = signed_bytes(sec.tenant, header, payload)
    modes: tuple[Mode, ...] = ("POST",) if extra else ("GET", "POST")
    await sec.expect_rejected([*bearer(forged).items(), *extra], reason, modes=modes)


async def test_many_authorization_headers(sec: AdversarialStack) -> None:
    """Repeated Authorization headers (Hasura forwards duplicates in GET mode, and case variants in
    POST mode) are ambiguous: refused whatever they hold, even all copies of a valid token."""
    valid = sec.keycloak.mint(sec.tenant.name)
    await sec.expect_rejected([("Authorization", f"Bearer {valid}")] * 40, "malformed_token", modes=("GET",))
    await sec.expect_rejected([("Authorization", "Bearer x")] * 1000, "malformed_token", modes=("GET",))
    variants = sorted(
        {"".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate("authorization")) for i in range(1000)}
    )
    await sec.expect_rejected([(name, "Bearer x") for name in variants], "malformed_token", modes=("POST",))
    await sec.expect_rejected(
        [(name, f"Bearer {valid}") for name in variants[:100]], "malformed_token", modes=("POST",)
    )
    await sec.expect_session(bearer(valid))


def test_forge_helpers_are_exact() -> None:
    """The raw forging helpers round-trip (a forged token is what the test says it is)."""
    token = f"{b64url(b'{}')}.{b64url(b'[]')}.{b64url(b'x')}"
    assert header_of(token) == {}
    assert parts(token)[2] == "eA"
