"""Our JWS path against joserfc, the oracle, on hypothesis mutations of valid tokens.

Tokens are signed by RS256, PS256/RS384 (an RSA key published without `alg`), ES256, ES384 and
EdDSA (Ed25519) keys of one JWKS that also holds an RSA `enc` key, then mutated: bit flips in any
decoded segment, character swaps in the compact string, `alg` and `kid` swaps (re-signed or not),
JSON re-encodings (whitespace, key order, escapes, duplicate members, a byte-order mark), base64
re-encodings (padding, the standard alphabet, non-canonical trailing bits), signature surgery
(truncated, extended, empty, zero, high-S, another token's) and extra header members. For each,
`tests/jwsoracle.py` must find no disagreement between our path and joserfc's `validate_compact`
(signature layer, exact) and `deserialize_compact` (whole JWS, modulo our documented stricter rules).
"""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from typing import Any, Final

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from tests.jwsoracle import Oracle
from webhook.core.keys import parse_jwks

ALLOWED: Final = frozenset({"RS256", "RS384", "PS256", "ES256", "ES384", "EdDSA"})
ALL_ALGS: Final = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "none", "rs256")
P256_N: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
Key = RSAKey | ECKey | OKPKey


@dataclass(frozen=True)
class Signer:
    kid: str
    key: Key
    alg: str


@dataclass(frozen=True)
class Material:
    signers: tuple[Signer, ...]
    jwks: dict[str, Any]
    oracle: Oracle


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sign(signer: Signer, header_segment: str, payload_segment: str, alg: str | None = None) -> str:
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    signature = JWSRegistry.algorithms[alg or signer.alg].sign(signing_input, signer.key)
    return f"{header_segment}.{payload_segment}.{b64(signature)}"


@functools.cache
def material() -> Material:
    rsa, rsa_any, enc = (RSAKey.generate_key(2048, private=True) for _ in range(3))
    ec256, ec384 = ECKey.generate_key("P-256", private=True), ECKey.generate_key("P-384", private=True)
    ed = OKPKey.generate_key("Ed25519", private=True)
    published: list[tuple[Key, dict[str, Any]]] = [
        (rsa, {"kid": "rsa-rs256", "alg": "RS256", "use": "sig"}),
        (rsa_any, {"kid": "rsa-any"}),  # no alg, no use: every allowed RSA algorithm
        (ec256, {"kid": "ec-p256", "alg": "ES256", "use": "sig"}),
        (ec384, {"kid": "ec-p384", "use": "sig"}),
        (ed, {"kid": "ed25519", "alg": "EdDSA", "use": "sig"}),
        (enc, {"kid": "rsa-enc", "alg": "RSA-OAEP", "use": "enc"}),
    ]
    jwks = {"keys": [{**key.as_dict(private=False), **extra} for key, extra in published]}
    signers = (
        Signer("rsa-rs256", rsa, "RS256"),
        Signer("rsa-any", rsa_any, "RS256"),
        Signer("rsa-any", rsa_any, "PS256"),
        Signer("rsa-any", rsa_any, "RS384"),
        Signer("ec-p256", ec256, "ES256"),
        Signer("ec-p384", ec384, "ES384"),
        Signer("ed25519", ed, "EdDSA"),
        Signer("rsa-enc", enc, "RS256"),  # an encryption key never verifies
    )
    return Material(signers, jwks, Oracle(jwks, ALLOWED))


CLAIMS: Final = {
    "exp": 4102444800,
    "iat": 1700000000,
    "jti": "2b7c0d3e-1f4a-4b5c-8d6e-7f8091a2b3c4",
    "iss": "http://kc.test/realms/tenant-90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    "aud": "account",
    "sub": "a20376d6-e53a-4edf-afc3-cc18bb8e23e5",
    "typ": "Bearer",
    "azp": "admin-portal",
    "https://hasura.io/jwt/claims": {"x-hasura-default-role": "admin-user", "x-hasura-allowed-roles": ["admin-user"]},
    "name": "Zoë / \u00e9lecteur",
}

JSON_SPELLINGS: Final = ("spaces", "sorted", "ascii-escapes", "indent", "duplicate", "bom", "nan")


def respell(value: dict[str, Any], how: str) -> bytes:
    if how == "spaces":
        return json.dumps(value).encode()
    if how == "sorted":
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
    if how == "ascii-escapes":
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()
    if how == "indent":
        return json.dumps(value, indent=1).encode()
    if how == "duplicate":  # a second copy of the first member, with another value, in front
        first = next(iter(value))
        return b'{"' + first.encode() + b'":"dup",' + compact(value)[1:]
    if how == "bom":
        return b"\xef\xbb\xbf" + compact(value)
    return compact({**value, "nbf": float("nan")})


def flip_trailing_bits(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(segment) % 4 == 0:
        return segment + "A"
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) | 1]


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """A token signed by one of the keys, then mutated in one way."""
    m = material()
    signer = draw(st.sampled_from(m.signers))
    header: dict[str, Any] = {"alg": signer.alg, "typ": "JWT", "kid": signer.kid}
    claims = dict(CLAIMS)
    header_segment, payload_segment = b64(compact(header)), b64(compact(claims))
    token = sign(signer, header_segment, payload_segment)
    kind = draw(
        st.sampled_from(
            ["none", "bitflip", "charflip", "alg", "kid", "json", "base64", "signature", "header", "segments"]
        )
    )
    event(f"mutation: {kind}")
    resign = draw(st.booleans())
    if kind == "bitflip":
        index = draw(st.integers(0, 2))
        segment = unb64(token.split(".")[index])
        if not segment:
            return token
        bit = draw(st.integers(0, 8 * len(segment) - 1))
        flipped = bytearray(segment)
        flipped[bit // 8] ^= 1 << (bit % 8)
        parts = token.split(".")
        parts[index] = b64(bytes(flipped))
        return ".".join(parts)
    if kind == "charflip":
        position = draw(st.integers(0, len(token) - 1))
        char = draw(st.sampled_from("AQgw09-_=+/. \t\u00e9"))
        return token[:position] + char + token[position + 1 :]
    if kind == "alg":
        header["alg"] = draw(st.sampled_from(ALL_ALGS))
        header_segment = b64(compact(header))
        if not resign:
            return f"{header_segment}.{payload_segment}.{token.split('.')[2]}"
        other = draw(st.sampled_from(m.signers))  # the signature is whatever that key makes under its own alg
        return sign(other, header_segment, payload_segment)
    if kind == "kid":
        kid = draw(st.sampled_from([*(s.kid for s in m.signers), "unknown", "", None]))
        if kid is None:
            del header["kid"]
        else:
            header["kid"] = kid
        header_segment = b64(compact(header))
        if not resign:
            return f"{header_segment}.{payload_segment}.{token.split('.')[2]}"
        return sign(signer, header_segment, payload_segment)
    if kind == "json":
        how = draw(st.sampled_from(JSON_SPELLINGS))
        if draw(st.booleans()):
            header_segment = b64(respell(header, how))
        else:
            payload_segment = b64(respell(claims, how))
        return sign(signer, header_segment, payload_segment) if resign else f"{header_segment}.{payload_segment}.x"
    if kind == "base64":
        index = draw(st.integers(0, 2))
        how = draw(st.sampled_from(["padding", "standard", "trailing-bits"]))
        parts = token.split(".")
        raw = unb64(parts[index])
        if how == "padding":
            parts[index] = base64.urlsafe_b64encode(raw).decode()
        elif how == "standard":
            parts[index] = base64.b64encode(raw).rstrip(b"=").decode()
        else:
            parts[index] = flip_trailing_bits(parts[index])
        if resign and index < 2:
            return sign(signer, parts[0], parts[1])
        return ".".join(parts)
    if kind == "signature":
        raw = unb64(token.split(".")[2])
        how = draw(st.sampled_from(["truncate", "extend", "empty", "zero", "high-s", "other-token", "random"]))
        if how == "truncate":
            raw = raw[:-1]
        elif how == "extend":
            raw = raw + b"\x00"
        elif how == "empty":
            raw = b""
        elif how == "zero":
            raw = bytes(len(raw))
        elif how == "high-s" and signer.alg == "ES256":
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            raw = r.to_bytes(32, "big") + (P256_N - s).to_bytes(32, "big")  # still valid (malleable)
        elif how == "other-token":
            forged = sign(signer, header_segment, b64(compact({**claims, "sub": "someone-else"})))
            raw = unb64(forged.split(".")[2])
        elif how == "random":
            raw = draw(st.binary(min_size=len(raw), max_size=len(raw)))
        return f"{header_segment}.{payload_segment}.{b64(raw)}"
    if kind == "header":
        name = draw(st.sampled_from(["jku", "x5u", "x5t", "cty", "b64", "crit", "jwk", "typ", "zip"]))
        header[name] = draw(
            st.sampled_from(["https://attacker.test/jwks", False, ["b64"], 1, None, "JWT", {"kty": "oct"}])
        )
        if name == "b64":
            header["crit"] = ["b64"]
        header_segment = b64(compact(header))
        return sign(signer, header_segment, payload_segment) if resign else f"{header_segment}.{token.split('.', 1)[1]}"
    if kind == "segments":
        return draw(st.sampled_from([token + ".", token.rsplit(".", 1)[0], f"{token}.{payload_segment}", "." + token]))
    return token


def _check(token: str) -> None:
    oracle = material().oracle
    mine, theirs = oracle.verdicts(token)
    event(f"ours {'accepts' if mine is None else 'refuses'}, joserfc {'accepts' if theirs else 'refuses'}")
    assert oracle.disagreements(token) == [], token


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens())
def test_ours_agrees_with_joserfc_on_mutated_tokens(token: str) -> None:
    """No mutation of a valid RS256/PS256/RS384/ES256/ES384/EdDSA token makes our path and joserfc disagree."""
    _check(token)


@pytest.mark.slow
@settings(max_examples=20_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens())
def test_ours_agrees_with_joserfc_on_many_mutated_tokens(token: str) -> None:
    """The same property over 20,000 mutations (the slow job)."""
    _check(token)


def test_every_signer_is_accepted_by_both_but_the_enc_key() -> None:
    """Positive control: each signing key's honest token is accepted by both; the enc key's by neither."""
    m = material()
    for signer in m.signers:
        token = sign(signer, b64(compact({"alg": signer.alg, "typ": "JWT", "kid": signer.kid})), b64(compact(CLAIMS)))
        mine, theirs = m.oracle.verdicts(token)
        assert (mine is None, theirs) == ((True, True) if signer.kid != "rsa-enc" else (False, False)), signer
        assert m.oracle.disagreements(token) == []


def test_oracle_reports_a_path_that_uses_the_wrong_keys() -> None:
    """The oracle is not vacuous: ours holding another key set than the one published disagrees."""
    m = material()
    signer = m.signers[0]
    token = sign(signer, b64(compact({"alg": "RS256", "typ": "JWT", "kid": signer.kid})), b64(compact(CLAIMS)))
    other = {"keys": [{**RSAKey.generate_key(2048).as_dict(private=False), "kid": signer.kid, "alg": "RS256"}]}
    broken = Oracle(m.jwks, ALLOWED)
    broken.keys = parse_jwks(orjson.dumps(other), ALLOWED)
    assert broken.disagreements(token) != []
