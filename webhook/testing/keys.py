"""Signing keys and raw JWS for the fake Keycloak: the key pool, Keycloak's kids and JWKs, ``sign_raw``.

Rules of this module:
- A kid is derived as Keycloak's ``KeyUtils.createKeyId`` does: base64url of the SHA-256 of the public
  key's X.509 SubjectPublicKeyInfo (checked against Keycloak 26.7). Nothing may rely on it: the service
  treats kid and x5c as opaque.
- A published JWK has Keycloak's field order; an RSA one carries a self-signed certificate in ``x5c``
  (``x5t``, ``x5t#S256``) as Keycloak's does.
- Keys come from a process-wide pool (``pooled_key``): an owner allocating slots in order gets distinct
  keys, while separate owners reuse the same keys, so a suite creating hundreds of realms generates each
  key once. ``attacker_key`` draws from slots no realm ever gets.
- ``sign_raw`` signs exactly what it is given; the signature is always computed with ``alg``, whatever
  the header claims. ``DROP`` removes a field in ``merge_overrides`` (how tokens are crafted bad).
- Pure computation: no IO, no HTTP.
"""

from __future__ import annotations

import base64
import datetime
import enum
import functools
import hashlib
import hmac
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, OctKey, RSAKey
from joserfc.jws import JWSRegistry

__all__ = [
    "DROP",
    "AsymmetricKey",
    "KeyState",
    "RealmKey",
    "SigningKey",
    "attacker_key",
    "b64url",
    "guess_alg",
    "json_bytes",
    "key_family",
    "keycloak_kid",
    "merge_overrides",
    "pooled_key",
    "sign_raw",
]

_RSA_ALGS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class _Drop(enum.Enum):
    DROP = "DROP"


#: Value for ``claims`` / ``hasura_claims`` / ``header`` overrides that removes the field.
DROP: Final = _Drop.DROP

AsymmetricKey = RSAKey | ECKey
#: What a token can be signed with: a joserfc key, a PEM (private key, or any bytes as an HMAC secret),
#: or a ``cryptography`` private key.
SigningKey = RSAKey | ECKey | OctKey | bytes | str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def key_family(alg: str) -> str:
    """Key family of a signing algorithm: "RSA" or an EC curve name."""
    if alg in _RSA_ALGS:
        return "RSA"
    if alg in _EC_CURVES:
        return _EC_CURVES[alg]
    raise ValueError(f"unsupported signing algorithm for a realm key: {alg!r}")


@functools.cache
def pooled_key(family: str, slot: int) -> AsymmetricKey:
    """The private key at ``slot`` of the process-wide pool (RSA-2048 costs ~0.1 s: generate once)."""
    if family == "RSA":
        return RSAKey.generate_key(2048, private=True)
    return ECKey.generate_key(family, private=True)


def attacker_key(algorithm: str = "RS256", index: int = 0) -> AsymmetricKey:
    """A private key that belongs to no realm of any ``FakeKeycloak`` (cached per algorithm family)."""
    return pooled_key(key_family(algorithm), -1 - index)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load_private_pem(pem: bytes | str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(pem.encode("utf-8") if isinstance(pem, str) else pem, None)
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unsupported private key type {type(loaded).__name__}")
    return loaded


def guess_alg(key: SigningKey) -> str:
    """The algorithm a key naturally signs with: RS256, ES256/384/512 by curve, or HS256 for a secret."""
    if isinstance(key, bytes | str):
        pem = key.encode("utf-8") if isinstance(key, str) else key
        if b"PRIVATE KEY" not in pem:
            return "HS256"
        key = _load_private_pem(pem)
    if isinstance(key, RSAKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = ECKey.import_key(key)
    if isinstance(key, ECKey):
        return {"P-384": "ES384", "P-521": "ES512"}.get(key.curve_name, "ES256")
    return "HS256"


def _coerce_asymmetric(key: SigningKey) -> AsymmetricKey | OctKey:
    if isinstance(key, bytes | str):
        key = _load_private_pem(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(key)
    return key


def _hmac_secret(key: SigningKey) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, OctKey):
        return key.raw_value
    raise TypeError(f"an HMAC algorithm needs a secret (bytes, str or OctKey), not {type(key).__name__}")


def sign_raw(
    header: Mapping[str, Any],
    payload: bytes | Mapping[str, Any],
    key: SigningKey | None,
    *,
    alg: str | None = None,
) -> str:
    """Serialize and sign a compact JWS exactly as given, with no validation of header or payload.

    ``alg`` (default: ``header["alg"]``) picks how the signature is computed: "none" gives an empty
    signature, "HS*" uses ``key`` as the raw secret (e.g. a realm's public PEM, for the classic confusion
    attack), anything else signs with the private ``key``. ``payload`` bytes are used verbatim.
    """
    signing_alg = alg if alg is not None else str(header.get("alg", "none"))
    body = bytes(payload) if isinstance(payload, bytes) else json_bytes(dict(payload))
    signing_input = f"{b64url(json_bytes(dict(header)))}.{b64url(body)}".encode("ascii")
    if signing_alg == "none":
        signature = b""
    else:
        if key is None:
            raise ValueError(f"algorithm {signing_alg!r} needs a key")
        if signing_alg.startswith("HS"):
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[signing_alg]
            signature = hmac.new(_hmac_secret(key), signing_input, digest).digest()
        else:
            model = JWSRegistry.algorithms.get(signing_alg)
            if model is None:
                raise ValueError(f"unknown JWS algorithm {signing_alg!r}")
            signature = model.sign(signing_input, _coerce_asymmetric(key))
    return f"{signing_input.decode('ascii')}.{b64url(signature)}"


def merge_overrides(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Apply ``overrides`` to ``base`` in place (``DROP`` removes the field); return ``base``."""
    for name, value in (overrides or {}).items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def _self_signed_der(key: RSAKey, common_name: str) -> bytes:
    """A self-signed certificate for ``key``, like the one Keycloak publishes in ``x5c``."""
    private = key.private_key
    if not isinstance(private, rsa.RSAPrivateKey):
        raise TypeError("a certificate needs the private RSA key")
    # Keycloak puts the whole realm name in CN, even past X.509's 64-character bound (event realms have 86).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)])
    issued = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(common_name.encode()).digest()[:8], "big"))
        .not_valid_before(issued)
        .not_valid_after(issued + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


#: Keycloak's key statuses (``GET /admin/realms/{realm}/keys``): active signs, passive only verifies,
#: disabled is no longer published.
KeyState = Literal["active", "passive", "disabled"]


def keycloak_kid(key: AsymmetricKey) -> str:
    """Keycloak's ``KeyUtils.createKeyId``: base64url(SHA-256(SubjectPublicKeyInfo DER))."""
    der = key.as_der(private=False)
    return b64url(hashlib.sha256(der).digest())


@dataclass(eq=False)
class RealmKey:
    """One key of a realm: its material, algorithm, use, kid and Keycloak state."""

    key: AsymmetricKey
    alg: str  # the JWS algorithm for a "sig" key, "RSA-OAEP" for the "enc" key
    use: Literal["sig", "enc"]
    realm: str
    kid: str = field(init=False)
    state: KeyState = "active"
    _jwk: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.kid = keycloak_kid(self.key)

    def public_jwk(self) -> dict[str, Any]:
        """The key as Keycloak publishes it (field order included); computed once."""
        if self._jwk is None:
            material = dict(self.key.as_dict(private=False))
            material.pop("kty", None)
            jwk: dict[str, Any] = {
                "kid": self.kid,
                "kty": self.key.key_type,
                "alg": self.alg,
                "use": self.use,
            }
            jwk.update(material)
            if isinstance(self.key, RSAKey):
                der = _self_signed_der(self.key, self.realm)
                jwk["x5c"] = [base64.b64encode(der).decode("ascii")]
                jwk["x5t"] = b64url(hashlib.sha1(der, usedforsecurity=False).digest())
                jwk["x5t#S256"] = b64url(hashlib.sha256(der).digest())
            self._jwk = jwk
        return dict(self._jwk)
