"""Realm key sets: a Keycloak JWKS document turned into verification keys. Pure, no IO.

Rules of this module:
- Only signing keys are kept: `use` absent or `sig`. Keycloak's `enc` (RSA-OAEP) key never verifies.
- A key is kept only for the algorithms it can serve *and* the configuration allows: its `alg`
  if the JWK names one, else every allowed algorithm of its key type (and curve).
- A `kid` that appears twice is ambiguous and both keys are dropped (fail closed).
- Private members of a JWK, if a broken Keycloak published them, are never imported.
- `fingerprint` changes whenever the usable key material changes; caches of verified tokens key
  their validity on it so a removed key stops working at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import orjson
from joserfc.jwk import ECKey, OKPKey, RSAKey

VerificationKey: TypeAlias = RSAKey | ECKey | OKPKey

_RSA_ALGS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES: Final = frozenset({"Ed25519", "Ed448"})
_PUBLIC_MEMBERS: Final = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
MAX_KEYS: Final = 64
MAX_KID_CHARS: Final = 256


class JwksError(ValueError):
    """The JWKS document is not a key set at all (not JSON, wrong shape, too many keys).

    A well-formed set with no usable signing key is not an error: the realm then has no keys and
    every token of it is `unknown_kid`."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One verification key of a realm and the algorithms it may verify."""

    kid: str
    key: VerificationKey
    algorithms: frozenset[str]
    public_jwk: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RealmKeys:
    """A realm's usable signing keys by `kid`, plus a fingerprint of the material."""

    by_kid: Mapping[str, SigningKey]
    fingerprint: str
    ignored: int  # keys in the document that were not usable for signature verification


def _algorithms_for(jwk: Mapping[str, Any], allowed: frozenset[str]) -> frozenset[str]:
    kty = jwk.get("kty")
    if kty == "RSA":
        possible = _RSA_ALGS
    elif kty == "EC":
        crv = jwk.get("crv")
        alg = _EC_ALGS.get(crv) if type(crv) is str else None
        possible = frozenset({alg}) if alg else frozenset()
    elif kty == "OKP" and type(jwk.get("crv")) is str and jwk["crv"] in _OKP_CURVES:
        possible = frozenset({"EdDSA"})
    else:
        return frozenset()
    declared = jwk.get("alg")
    if declared is not None:
        if type(declared) is not str:
            return frozenset()
        possible = possible & {declared}
    return possible & allowed


def _import(jwk: Mapping[str, Any]) -> VerificationKey:
    public = {name: jwk[name] for name in _PUBLIC_MEMBERS[jwk["kty"]]}
    for member, value in public.items():
        if type(value) is not str:
            raise JwksError(f"JWK member {member!r} is not a string")
    if jwk["kty"] == "RSA":
        return RSAKey.import_key(public)
    if jwk["kty"] == "EC":
        return ECKey.import_key(public)
    return OKPKey.import_key(public)


def _usable_key(jwk: Any, seen: Mapping[str, int], allowed: frozenset[str]) -> SigningKey | None:
    """The signing key this JWK describes, or None if it is not usable for signatures."""
    if type(jwk) is not dict:
        return None
    kid = jwk.get("kid")
    if type(kid) is not str or not 0 < len(kid) <= MAX_KID_CHARS or seen[kid] != 1:
        return None
    if jwk.get("use", "sig") != "sig" or type(jwk.get("kty")) is not str or jwk["kty"] not in _PUBLIC_MEMBERS:
        return None
    algorithms = _algorithms_for(jwk, allowed)
    if not algorithms:
        return None
    key = _import(jwk)
    public: dict[str, Any] = {name: jwk[name] for name in _PUBLIC_MEMBERS[jwk["kty"]]}
    public.update(kid=kid, use="sig", alg=jwk.get("alg") or min(algorithms))
    return SigningKey(kid, key, algorithms, public)


def parse_jwks(document: bytes, allowed: frozenset[str]) -> RealmKeys:
    """The signing keys of a JWKS document; `JwksError` if it is not a JWKS at all."""
    try:
        data = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise JwksError("JWKS is not JSON") from exc
    if type(data) is not dict or type(data.get("keys")) is not list:
        raise JwksError('JWKS is not an object with a "keys" list')
    raw_keys: list[Any] = data["keys"]
    if len(raw_keys) > MAX_KEYS:
        raise JwksError(f"JWKS holds more than {MAX_KEYS} keys")

    seen: dict[str, int] = {}
    for jwk in raw_keys:
        if type(jwk) is dict and type(jwk.get("kid")) is str:
            seen[jwk["kid"]] = seen.get(jwk["kid"], 0) + 1

    by_kid: dict[str, SigningKey] = {}
    ignored = 0
    for jwk in raw_keys:
        try:
            key = _usable_key(jwk, seen, allowed)
        except Exception:
            key = None
        if key is None:
            ignored += 1
        else:
            by_kid[key.kid] = key

    material = orjson.dumps(
        sorted((k.kid, sorted(k.algorithms), dict(k.public_jwk)) for k in by_kid.values()),
        option=orjson.OPT_SORT_KEYS,
    )
    return RealmKeys(by_kid, hashlib.sha256(material).hexdigest()[:16], ignored)
