"""Token surgery for the attack battery: re-sign, splice, re-encode what the fake Keycloak minted."""

from __future__ import annotations

import json
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.security.support import b64url, b64url_decode
from webhook.testing.keycloak import FakeRealm, SigningKey, sign_raw

# Order of the P-256 group: a signature (r, s) needs 0 < r, s < N.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def parts(token: str) -> tuple[str, str, str]:
    head, body, sig = token.split(".")
    return head, body, sig


def header_of(token: str) -> dict[str, Any]:
    return dict(orjson.loads(b64url_decode(parts(token)[0])))


def payload_of(token: str) -> dict[str, Any]:
    return dict(orjson.loads(b64url_decode(parts(token)[1])))


def signature_of(token: str) -> bytes:
    return b64url_decode(parts(token)[2])


def with_signature(token: str, signature: bytes | str) -> str:
    head, body, _ = parts(token)
    sig = signature if isinstance(signature, str) else b64url(signature)
    return f"{head}.{body}.{sig}"


def raw_token(header: bytes, payload: bytes, signature: bytes) -> str:
    """A compact JWS of exactly these bytes (no signing)."""
    return f"{b64url(header)}.{b64url(payload)}.{b64url(signature)}"


def signed_bytes(realm: FakeRealm, header: bytes, payload: bytes, kid: str | None = None, alg: str = "RS256") -> str:
    """Header and payload given as raw JSON bytes (duplicates, escapes...), signed by the realm's key.

    The signature is genuine: only the JSON parsing rules can reject such a token."""
    from joserfc.jws import JWSRegistry

    signing_input = f"{b64url(header)}.{b64url(payload)}".encode("ascii")
    key = realm.private_key(kid)
    signature = JWSRegistry.algorithms[alg].sign(signing_input, key)
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def resign(realm: FakeRealm, header: dict[str, Any], payload: dict[str, Any], key: SigningKey | None = None) -> str:
    """Sign header/payload as given with `key` (default: the realm's active key), alg from the header."""
    return sign_raw(header, payload, key if key is not None else realm.private_key(), alg=str(header["alg"]))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def ecdsa_raw(r: int, s: int, size: int = 32) -> bytes:
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def ecdsa_der(raw: bytes) -> bytes:
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def flip_last_bits(segment: str) -> str:
    """The same bytes with the unused trailing bits of the last base64url character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    rest = len(segment) % 4
    if rest == 0:
        raise ValueError("segment has no unused bits")
    value = alphabet.index(segment[-1]) | (0x0F if rest == 2 else 0x03)
    return segment[:-1] + alphabet[value]
