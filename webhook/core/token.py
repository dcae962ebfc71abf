"""Compact JWS access tokens: parse, verify the signature, check the registered claims. Pure.

Rules of this module:
- No IO and no clock: callers pass the key and `now`. Everything here is a function of its inputs.
- Parsing is strict and bounded before anything is decoded: size cap, exactly three segments,
  strict base64url (no padding, no `+`/`/`, canonical trailing bits), JSON objects without
  duplicate member names.
- The header may hold only `alg`, `kid` and `typ` (what Keycloak sends). `jku`, `x5u`, `jwk`,
  `x5c`, `crit`, `b64`, `cty`... are refused, so no key or URL is ever taken from a token.
- Parse once: each segment is base64url-decoded once (strictly) and each JSON segment parsed once;
  the signature is checked on those bytes, never re-decoded.
- The signature is checked with the `cryptography` public key joserfc imported from the JWK
  (joserfc stays the importer), exactly as joserfc's algorithm models check it: RSASSA-PKCS1-v1_5
  and RSASSA-PSS (salt = digest size) for RS*/PS*, raw `r || s` of the curve's size for ES*,
  Ed25519/Ed448 for EdDSA. The key may verify only the algorithms `SigningKey.algorithms` lists
  (its key type, curve and declared `alg`, within the configured allow-list).
  tests/contract/test_jws_oracle.py holds this path to joserfc's own `jws.validate_compact`.
- Any exception while verifying is a rejection; nothing from here can become a 5xx.
- Hash once: `digests(token)` makes the token's SHA-256 (the cache key and audit digest) and the
  SHA-256 of its signing input in one pass (SHA-256 is a running hash: the signing input is the
  token's prefix up to the last `.`). `verify_signature` checks RS256/PS256/ES256 against that
  pre-computed digest (`Prehashed`) when it covers exactly the parsed signing input, instead of
  hashing the ~4.4 KB again (~4.5 us of a cold request).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson
import pybase64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

from webhook.core.keys import SigningKey
from webhook.core.reasons import Reason, Rejected

if TYPE_CHECKING:
    from _hashlib import HASH

ALLOWED_HEADERS: Final = frozenset({"alg", "kid", "typ"})
MAX_HEADER_SEGMENT: Final = 1024
MAX_CLAIM_CHARS: Final = 256  # cap on claimed strings copied into logs and audit records
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}
_UNUSED_BITS: Final = {2: 0x0F, 3: 0x03}  # segment length mod 4 -> bits of the last char that must be 0
_PADDING: Final = {0: b"", 2: b"==", 3: b"="}


class ParsedToken(NamedTuple):
    """A token split and decoded but **not verified**: nothing in it is trusted yet.

    NamedTuples rather than frozen dataclasses (here and `TokenFacts`): one is built for every
    token never seen before, and a frozen dataclass's `__init__` costs a `object.__setattr__` per
    field (~4x the tuple's construction).
    """

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes  # `<header segment>.<payload segment>`, what the signature covers
    signature: bytes  # the decoded signature segment

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if type(kid) is str else None


class TokenFacts(NamedTuple):
    """What a token *claims* about itself, length-capped, for logs and the audit. Unverified."""

    alg: str | None = None
    kid: str | None = None
    iss: str | None = None
    sub: str | None = None
    azp: str | None = None
    jti: str | None = None
    typ: str | None = None
    exp: int | None = None
    kind: str | None = None  # "api_key" when the token carries the `api_key` claim (as claimed)

    @classmethod
    def of(cls, parsed: ParsedToken | None) -> TokenFacts:
        if parsed is None:
            return cls()
        claims = parsed.claims
        exp = claims.get("exp")
        exp_value = int(exp) if (type(exp) is int or type(exp) is float) and math.isfinite(exp) else None
        return cls(
            alg=_capped(parsed.header.get("alg")),
            kid=_capped(parsed.header.get("kid")),
            iss=_capped(claims.get("iss")),
            sub=_capped(claims.get("sub")),
            azp=_capped(claims.get("azp")),
            jti=_capped(claims.get("jti")),
            typ=_capped(claims.get("typ")),
            exp=exp_value,
            kind="api_key" if "api_key" in claims else None,
        )


class TokenDigests(NamedTuple):
    """The SHA-256 of a token and the running hash of its signing input, from one pass (`digests`)."""

    token: bytes  # SHA-256 of the whole token: the verified-token cache key, the audit's digest
    signing: HASH | None  # SHA-256 state over the bytes before the last "." (None: there is none)
    signed_length: int  # how many bytes `signing` covers


def digests(token: str) -> TokenDigests:
    """Both digests of `token` in one SHA-256 pass (see the module rules)."""
    raw = token.encode("utf-8", "surrogatepass")
    cut = raw.rfind(b".")
    if cut < 0:
        return TokenDigests(hashlib.sha256(raw).digest(), None, 0)
    view = memoryview(raw)
    signing = hashlib.sha256(view[:cut])
    whole = signing.copy()
    whole.update(view[cut:])
    return TokenDigests(whole.digest(), signing, cut)


def _capped(value: object) -> str | None:
    if type(value) is not str:
        return None
    return value[:MAX_CLAIM_CHARS]


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def b64url_decode(segment: bytes) -> bytes:
    """Strict base64url (RFC 7515 section 2): no padding, canonical, URL alphabet only.

    pybase64 decodes with SIMD (a 4.3 KB payload in ~4 us against ~30 us for binascii); with
    `validate=True` it refuses any byte outside the alphabet. `+`, `/` and `=` are refused here
    first (memchr scans), since pybase64 would take them as the standard alphabet or padding.
    """
    rest = len(segment) % 4
    if rest == 1 or b"=" in segment or b"+" in segment or b"/" in segment:
        raise ValueError("not strict base64url")
    if rest and _B64_VALUE.get(segment[-1], 0) & _UNUSED_BITS[rest]:
        raise ValueError("non-canonical base64url: unused trailing bits set")
    try:
        return pybase64.b64decode(segment + _PADDING[rest], altchars=b"-_", validate=True)
    except Exception:
        raise ValueError("not base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


def loads_object(data: bytes) -> dict[str, Any]:
    """A JSON object with unique member names at every level; ValueError otherwise.

    Fast path: orjson parses, and re-serialising a compact document without duplicates gives the
    same bytes back (Keycloak writes compact JSON). Only when the bytes differ (duplicates,
    whitespace, escapes, float spellings) is the slower stdlib parse with a duplicate check run.
    """
    obj = orjson.loads(data)
    if type(obj) is not dict:
        raise ValueError("not a JSON object")
    if orjson.dumps(obj) != data:
        obj = json.loads(data, object_pairs_hook=_reject_duplicates)
    return obj  # type: ignore[no-any-return]


# header segment -> its checked header: a realm's tokens all carry one of a few identical headers
# (`{"alg":"RS256","typ":"JWT","kid":...}`), so decoding and checking it again is repeated work
# (~2.5 us of a cold token). Only headers that passed every check are kept; the memo is bounded
# (cleared when full), so distinct headers sent by anyone cost what they cost before, no more.
_HEADERS: dict[bytes, dict[str, Any]] = {}
_MAX_HEADERS: Final = 256


def _check_header(header: dict[str, Any]) -> None:
    unknown = header.keys() - ALLOWED_HEADERS
    if unknown:
        raise Rejected(Reason.HEADER_NOT_ALLOWED, f"header {sorted(unknown)[0][:32]!r} is not accepted")
    if type(header.get("alg")) is not str:
        raise Rejected(Reason.MALFORMED_TOKEN, "header alg missing or not a string")
    for name in ("typ", "kid"):
        if name in header and type(header[name]) is not str:
            raise Rejected(Reason.MALFORMED_TOKEN, f"header {name} is not a string")


def parse(token: str, *, max_bytes: int) -> ParsedToken:
    """Split and decode a compact JWS; `Rejected` (malformed_token, header_not_allowed) if not one."""
    if len(token) > max_bytes:
        raise Rejected(Reason.MALFORMED_TOKEN, f"token longer than {max_bytes} bytes")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise Rejected(Reason.MALFORMED_TOKEN, "token is not ASCII") from None
    first = raw.find(b".")
    second = raw.find(b".", first + 1) if first >= 0 else -1
    if second < 0 or raw.find(b".", second + 1) >= 0:  # (three memchr scans cost less than split)
        detail = "JWE (5 segments) is not accepted" if raw.count(b".") == 4 else "not 3 segments"
        raise Rejected(Reason.MALFORMED_TOKEN, detail)
    header_b64, payload_b64, signature_b64 = raw[:first], raw[first + 1 : second], raw[second + 1 :]
    if first > MAX_HEADER_SEGMENT or not signature_b64:
        raise Rejected(Reason.MALFORMED_TOKEN, "header too large or signature empty")
    header = _HEADERS.get(header_b64)
    checked = header is not None
    try:
        if header is None:
            header = loads_object(b64url_decode(header_b64))
        claims = loads_object(b64url_decode(payload_b64))
        signature = b64url_decode(signature_b64)
    except (ValueError, TypeError, RecursionError):
        raise Rejected(Reason.MALFORMED_TOKEN, "segment is not base64url JSON object") from None
    if not checked:
        _check_header(header)
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        _HEADERS[header_b64] = header
    return ParsedToken(header, claims, raw[:second], signature)


def check_algorithm(parsed: ParsedToken, allowed: frozenset[str]) -> None:
    """`Rejected(alg_not_allowed)` unless the header `alg` is in the allow-list (exact case)."""
    if parsed.alg not in allowed:
        raise Rejected(Reason.ALG_NOT_ALLOWED, f"alg {parsed.alg[:16]!r} is not allowed")


Verify = Callable[[Any, bytes, bytes], None]  # (cryptography public key, signature, signed bytes)


def _rsa(pad: padding.AsymmetricPadding, digest: hashes.HashAlgorithm | Prehashed) -> Verify:
    def verify(public: Any, signature: bytes, message: bytes) -> None:
        public.verify(signature, message, pad, digest)

    return verify


def _pss(digest: hashes.HashAlgorithm) -> Verify:
    return _rsa(padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), digest)


def _ecdsa(curve: type[ec.EllipticCurve], size: int, digest: hashes.HashAlgorithm | Prehashed) -> Verify:
    """ECDSA on `curve`, whose r and s take `size` bytes each."""
    signing = ec.ECDSA(digest)

    def verify(public: Any, signature: bytes, message: bytes) -> None:
        # JWS carries r || s, each exactly the curve's size (RFC 7518 section 3.4); anything else fails
        if len(signature) != 2 * size or not isinstance(public.curve, curve):
            raise ValueError("ECDSA signature of the wrong size or key of another curve")
        r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
        public.verify(encode_dss_signature(r, s), message, signing)

    return verify


def _eddsa(public: Any, signature: bytes, message: bytes) -> None:
    if not isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise TypeError("EdDSA needs an Ed25519 or Ed448 key")
    public.verify(signature, message)


_VERIFIERS: Final[Mapping[str, Verify]] = {
    "RS256": _rsa(padding.PKCS1v15(), hashes.SHA256()),
    "RS384": _rsa(padding.PKCS1v15(), hashes.SHA384()),
    "RS512": _rsa(padding.PKCS1v15(), hashes.SHA512()),
    "PS256": _pss(hashes.SHA256()),
    "PS384": _pss(hashes.SHA384()),
    "PS512": _pss(hashes.SHA512()),
    "ES256": _ecdsa(ec.SECP256R1, 32, hashes.SHA256()),
    "ES384": _ecdsa(ec.SECP384R1, 48, hashes.SHA384()),
    "ES512": _ecdsa(ec.SECP521R1, 66, hashes.SHA512()),
    "EdDSA": _eddsa,
}
_SHA256_DONE: Final = Prehashed(hashes.SHA256())
# the same checks, given the SHA-256 of the signing input instead of the signing input itself
_PREHASHED: Final[Mapping[str, Verify]] = {
    "RS256": _rsa(padding.PKCS1v15(), _SHA256_DONE),
    "PS256": _rsa(padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), _SHA256_DONE),
    "ES256": _ecdsa(ec.SECP256R1, 32, _SHA256_DONE),
}


def verify_signature(parsed: ParsedToken, key: SigningKey, hashed: TokenDigests | None = None) -> None:
    """`Rejected(key_mismatch | bad_signature)` unless `key` verifies the token for its `alg`.

    `hashed`: `digests()` of the same token string `parsed` came from; its signing-input hash is
    used when it covers exactly `parsed.signing_input` and the algorithm hashes with SHA-256.
    """
    alg = parsed.alg
    verify = _VERIFIERS.get(alg)
    if verify is None or alg not in key.algorithms:
        raise Rejected(Reason.KEY_MISMATCH, f"key {key.kid[:64]!r} does not serve alg {alg[:16]!r}")
    message = parsed.signing_input
    if hashed is not None and hashed.signing is not None and hashed.signed_length == len(message):
        prehashed = _PREHASHED.get(alg)
        if prehashed is not None:
            verify, message = prehashed, hashed.signing.digest()
    try:
        verify(key.key.public_key, parsed.signature, message)
    except Exception:  # InvalidSignature, or anything a malformed signature makes the library raise
        raise Rejected(Reason.BAD_SIGNATURE, "signature does not verify") from None


@dataclass(frozen=True, slots=True)
class ClaimsPolicy:
    """What the registered claims must satisfy besides the issuer."""

    leeway: int
    audiences: frozenset[str]
    azps: frozenset[str]


def _time_claim(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise Rejected(Reason.CLAIMS_INVALID, f"{name} is missing")
        return None
    if not _is_number(value) or not math.isfinite(value):
        raise Rejected(Reason.CLAIMS_INVALID, f"{name} is not a number")
    return float(value)


def check_claims(claims: Mapping[str, Any], policy: ClaimsPolicy, now: float) -> None:
    """Registered-claim checks, in order: exp, nbf, iat, typ, aud, azp."""
    exp = _time_claim(claims, "exp", required=True)
    assert exp is not None  # noqa: S101 - required=True guarantees it
    if exp <= now - policy.leeway:
        raise Rejected(Reason.EXPIRED, "exp is in the past")
    for name in ("nbf", "iat"):
        value = _time_claim(claims, name, required=False)
        if value is not None and value > now + policy.leeway:
            raise Rejected(Reason.NOT_YET_VALID, f"{name} is in the future")
    if claims.get("typ") != "Bearer":
        raise Rejected(Reason.WRONG_TOKEN_TYPE, "typ is not Bearer (an ID or refresh token?)")
    if policy.audiences:
        aud = claims.get("aud")
        auds = [aud] if type(aud) is str else aud if type(aud) is list else []
        if not any(type(a) is str and a in policy.audiences for a in auds):
            raise Rejected(Reason.AUDIENCE_NOT_ALLOWED, "aud holds no allowed audience")
    azp = claims.get("azp")
    if policy.azps and (type(azp) is not str or azp not in policy.azps):
        raise Rejected(Reason.AZP_NOT_ALLOWED, "azp is not an allowed client")
