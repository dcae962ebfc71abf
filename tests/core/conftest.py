"""Shared material for the unit tests: keys generated once, a Keycloak-like JWKS, token builders.

Plain helpers (`sign`, `raw_token`, `b64url`, `keycloak_claims`...) are imported by the test modules
with `from .conftest import ...`; the keys are session-scoped fixtures because generating RSA keys
is the only slow thing in this suite.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from webhook.core.keys import RealmKeys, SigningKey, parse_jwks
from webhook.core.realms import Realm, RealmPolicy

PrivateKey: TypeAlias = RSAKey | ECKey | OKPKey

NOW: Final = 1_721_256_600.0
ISSUER_BASE: Final = "http://kc.test"
KEYCLOAK_INTERNAL: Final = "http://keycloak:8080"
TENANT_ID: Final = "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
OTHER_TENANT_ID: Final = "1c7c2a5e-8f0b-4c61-9d43-6a2f0e1b7d29"
EVENT_ID: Final = "3f2b8e41-5c6d-4a7e-8b9f-0a1b2c3d4e5f"
OTHER_EVENT_ID: Final = "d4c3b2a1-0f9e-4d8c-b7a6-5e4d3c2b1a09"
USER_ID: Final = "a20376d6-e53a-4edf-afc3-cc18bb8e23e5"
TENANT_REALM: Final = f"tenant-{TENANT_ID}"
EVENT_REALM: Final = f"tenant-{TENANT_ID}-event-{EVENT_ID}"
EXTRA_REALM: Final = "platform-admin"
HASURA: Final = "https://hasura.io/jwt/claims"
ROLES: Final = ("admin-user", "user", "tenant-read", "election-event-read")
RSA_KID: Final = "rsa-sig-kid"
ENC_KID: Final = "rsa-enc-kid"
EC_KID: Final = "ec-sig-kid"
ALLOWED: Final = frozenset({"RS256", "ES256"})


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(part: bytes | Mapping[str, Any]) -> str:
    return b64url(part if isinstance(part, bytes) else orjson.dumps(dict(part)))


def raw_token(header: bytes | Mapping[str, Any], payload: bytes | Mapping[str, Any], signature: bytes) -> str:
    """An unsigned/crafted compact token: each part base64url-encoded as given (bytes kept verbatim)."""
    return ".".join((_segment(header), _segment(payload), b64url(signature)))


def join_segments(*segments: bytes) -> str:
    """Base64url of arbitrary byte strings joined by dots (any number of segments)."""
    return ".".join(b64url(s) for s in segments)


def sign(header: Mapping[str, Any], claims: Mapping[str, Any] | bytes, key: PrivateKey) -> str:
    """A real compact JWS signed by joserfc; `header` must hold `alg`."""
    alg = str(header["alg"])
    payload = claims if isinstance(claims, bytes) else orjson.dumps(dict(claims))
    return jws.serialize_compact(dict(header), payload, key, algorithms=[alg])


def rs256_raw(header: bytes, payload: bytes, key: RSAKey) -> str:
    """A genuine RS256 signature over hand-written header/payload bytes joserfc would not produce."""
    signing_input = f"{b64url(header)}.{b64url(payload)}".encode("ascii")
    signature = key.get_op_key("sign").sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode()}.{b64url(signature)}"


def hs256_token(header: Mapping[str, Any], claims: Mapping[str, Any], secret: bytes) -> str:
    """An HS256 token computed by hand (key confusion: the secret may be a public key PEM)."""
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode("ascii")
    return f"{signing_input.decode()}.{b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def replace_segment(token: str, index: int, segment: str) -> str:
    """`token` with segment `index` (0 header, 1 payload, 2 signature) replaced verbatim."""
    parts = token.split(".")
    parts[index] = segment
    return ".".join(parts)


_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def non_canonical(segment: str) -> str:
    """The same bytes re-encoded with non-zero unused trailing bits (a lenient decoder accepts it)."""
    unused_bits = {2: 4, 3: 2}[len(segment) % 4]  # KeyError for a segment without trailing bits
    index = _ALPHABET.index(segment[-1])
    assert index % (1 << unused_bits) == 0, "canonical encoding has zero trailing bits"
    return segment[:-1] + _ALPHABET[index | 1]


def hasura_claims(**overrides: Any) -> dict[str, Any]:
    """The Hasura namespace claim of a tenant admin token; `None` values remove a member."""
    claims: dict[str, Any] = {
        "x-hasura-default-role": "admin-user",
        "x-hasura-tenant-id": TENANT_ID,
        "x-hasura-user-id": USER_ID,
        "x-hasura-allowed-roles": list(ROLES),
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def keycloak_claims(realm: str = TENANT_REALM, /, **overrides: Any) -> dict[str, Any]:
    """A Keycloak access token payload (see design/keycloak.md); `None` values remove a claim."""
    claims: dict[str, Any] = {
        "exp": int(NOW) + 240,
        "iat": int(NOW) - 60,
        "jti": "82aa19b3-2c1e-4b6a-9a55-5b8c7f3e1d20",
        "iss": f"{ISSUER_BASE}/realms/{realm}",
        "aud": "account",
        "sub": USER_ID,
        "typ": "Bearer",
        "azp": "admin-portal",
        "session_state": "6f1d8f7e-0d3c-4b52-a1e5-0b6a9c4d2e11",
        "acr": "1",
        "allowed-origins": ["*"],
        "realm_access": {"roles": [*ROLES, "offline_access", "uma_authorization"]},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid profile email",
        "sid": "6f1d8f7e-0d3c-4b52-a1e5-0b6a9c4d2e11",
        "email_verified": True,
        HASURA: hasura_claims(),
        "preferred_username": "admin",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def jwk_of(key: PrivateKey, **members: Any) -> dict[str, Any]:
    """The public JWK of `key` plus extra members (kid, use, alg...)."""
    return {**key.as_dict(private=False), **members}


def jwks_bytes(*jwks: Any) -> bytes:
    """A JWKS document holding exactly these entries (anything JSON, for malformed cases)."""
    return orjson.dumps({"keys": list(jwks)})


@dataclass(frozen=True, slots=True)
class TestKeys:
    """Private keys generated once per session."""

    __test__ = False  # not a test class despite the name

    rsa: RSAKey  # the realm's RS256 signing key
    enc: RSAKey  # the realm's RSA-OAEP encryption key
    ec: ECKey  # an ES256 signing key an admin added
    attacker: RSAKey  # nobody trusts this one
    okp: OKPKey

    def named(self, name: str) -> PrivateKey:
        """The key called `name` ("rsa", "ec", "okp", ...)."""
        key: PrivateKey = getattr(self, name)
        return key


@pytest.fixture(scope="session")
def keys() -> TestKeys:
    """Keys for the whole session (RSA generation is the slow part of this suite)."""
    return TestKeys(
        rsa=RSAKey.generate_key(2048),
        enc=RSAKey.generate_key(2048),
        ec=ECKey.generate_key("P-256"),
        attacker=RSAKey.generate_key(2048),
        okp=OKPKey.generate_key("Ed25519"),
    )


@pytest.fixture(scope="session")
def jwks_document(keys: TestKeys) -> bytes:
    """A realm JWKS as Keycloak publishes it: RS256 sig key, RSA-OAEP enc key, plus an ES256 key."""
    return jwks_bytes(
        jwk_of(keys.rsa, kid=RSA_KID, use="sig", alg="RS256"),
        jwk_of(keys.enc, kid=ENC_KID, use="enc", alg="RSA-OAEP"),
        jwk_of(keys.ec, kid=EC_KID, use="sig", alg="ES256"),
    )


@pytest.fixture(scope="session")
def realm_keys(jwks_document: bytes) -> RealmKeys:
    """The realm's usable keys with RS256 and ES256 allowed."""
    return parse_jwks(jwks_document, ALLOWED)


@pytest.fixture(scope="session")
def rsa_key(realm_keys: RealmKeys) -> SigningKey:
    """The realm's RS256 verification key."""
    return realm_keys.by_kid[RSA_KID]


@pytest.fixture(scope="session")
def ec_key(realm_keys: RealmKeys) -> SigningKey:
    """The realm's ES256 verification key."""
    return realm_keys.by_kid[EC_KID]


@pytest.fixture
def policy() -> RealmPolicy:
    """Realms as configured in a typical install: one public issuer, one extra realm."""
    return RealmPolicy((ISSUER_BASE,), frozenset({EXTRA_REALM}), KEYCLOAK_INTERNAL)


TENANT: Final = Realm(TENANT_REALM, TENANT_ID, None)
EVENT: Final = Realm(EVENT_REALM, TENANT_ID, EVENT_ID)
EXTRA: Final = Realm(EXTRA_REALM, None, None)


def header_json(**members: Any) -> bytes:
    """A compact JSON header (stdlib, so duplicate names can be spelled by hand elsewhere)."""
    return json.dumps(members, separators=(",", ":")).encode()
