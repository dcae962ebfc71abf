"""Compact JWS access tokens: parse, verify the signature, check the registered claims. Pure.

Rules of this module:
- No IO and no clock: callers pass the key and `now`. Everything here is a function of its inputs.
- Parsing is strict and bounded before anything is decoded: size cap, exactly three segments,
  strict base64url (no padding, no `+`/`/`, canonical trailing bits), JSON objects without
  duplicate member names.
- The header may hold only `alg`, `kid` and `typ` (what Keycloak sends). `jku`, `x5u`, `jwk`,
  `x5c`, `crit`, `b64`, `cty`... are refused, so no key or URL is ever taken from a token.
- The signature is checked by joserfc's `jws.validate_compact` with a registry whose allow-list
  is the configured algorithms (a `registry=` argument overrides `algorithms=` in joserfc).
- Any exception while verifying is a rejection; nothing from here can become a 5xx.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import JWSRegistry

from webhook.keys import SigningKey
from webhook.reasons import Reason, Rejected

ALLOWED_HEADERS: Final = frozenset({"alg", "kid", "typ"})
MAX_HEADER_SEGMENT: Final = 1024
MAX_CLAIM_CHARS: Final = 256  # cap on claimed strings copied into logs and audit records
_B64_TRANSLATE: Final = bytes.maketrans(b"-_", b"+/")
_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}
_UNUSED_BITS: Final = {2: 0x0F, 3: 0x03}  # segment length mod 4 -> bits of the last char that must be 0


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token split and decoded but **not verified**: nothing in it is trusted yet."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    segments: tuple[bytes, bytes, bytes]
    payload: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if type(kid) is str else None


@dataclass(frozen=True, slots=True)
class TokenFacts:
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


def _capped(value: object) -> str | None:
    if type(value) is not str:
        return None
    return value[:MAX_CLAIM_CHARS]


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


def b64url_decode(segment: bytes) -> bytes:
    """Strict base64url (RFC 7515 section 2): no padding, canonical, URL alphabet only."""
    rest = len(segment) % 4
    # three memchr scans: iterating a 4 KB segment byte by byte costs more than the RSA verify
    if rest == 1 or b"=" in segment or b"+" in segment or b"/" in segment:
        raise ValueError("not strict base64url")
    if rest and _B64_VALUE.get(segment[-1], 0) & _UNUSED_BITS[rest]:
        raise ValueError("non-canonical base64url: unused trailing bits set")
    padded = segment.translate(_B64_TRANSLATE) + b"=" * (-len(segment) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)


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


def parse(token: str, *, max_bytes: int) -> ParsedToken:
    """Split and decode a compact JWS; `Rejected` (malformed_token, header_not_allowed) if not one."""
    if len(token) > max_bytes:
        raise Rejected(Reason.MALFORMED_TOKEN, f"token longer than {max_bytes} bytes")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise Rejected(Reason.MALFORMED_TOKEN, "token is not ASCII") from None
    segments = raw.split(b".")
    if len(segments) != 3:
        detail = "JWE (5 segments) is not accepted" if len(segments) == 5 else "not 3 segments"
        raise Rejected(Reason.MALFORMED_TOKEN, detail)
    header_b64, payload_b64, signature_b64 = segments
    if len(header_b64) > MAX_HEADER_SEGMENT or not signature_b64:
        raise Rejected(Reason.MALFORMED_TOKEN, "header too large or signature empty")
    try:
        header = loads_object(b64url_decode(header_b64))
        payload = b64url_decode(payload_b64)
        claims = loads_object(payload)
        b64url_decode(signature_b64)
    except (ValueError, TypeError, RecursionError):
        raise Rejected(Reason.MALFORMED_TOKEN, "segment is not base64url JSON object") from None
    parsed = ParsedToken(header, claims, (header_b64, payload_b64, signature_b64), payload)
    unknown = header.keys() - ALLOWED_HEADERS
    if unknown:
        raise Rejected(Reason.HEADER_NOT_ALLOWED, f"header {sorted(unknown)[0][:32]!r} is not accepted")
    if type(header.get("alg")) is not str:
        raise Rejected(Reason.MALFORMED_TOKEN, "header alg missing or not a string")
    for name in ("typ", "kid"):
        if name in header and type(header[name]) is not str:
            raise Rejected(Reason.MALFORMED_TOKEN, f"header {name} is not a string")
    return parsed


def check_algorithm(parsed: ParsedToken, allowed: frozenset[str]) -> None:
    """`Rejected(alg_not_allowed)` unless the header `alg` is in the allow-list (exact case)."""
    if parsed.alg not in allowed:
        raise Rejected(Reason.ALG_NOT_ALLOWED, f"alg {parsed.alg[:16]!r} is not allowed")


def make_registry(allowed: frozenset[str]) -> JWSRegistry:
    """The joserfc registry carrying our allow-list; build once, reuse for every token."""
    return JWSRegistry(algorithms=sorted(allowed))


def verify_signature(parsed: ParsedToken, key: SigningKey, registry: JWSRegistry) -> None:
    """`Rejected(key_mismatch | bad_signature)` unless `key` verifies the token for its `alg`."""
    if parsed.alg not in key.algorithms:
        raise Rejected(Reason.KEY_MISMATCH, f"key {key.kid[:64]!r} does not serve alg {parsed.alg!r}")
    obj = jws.CompactSignature(dict(parsed.header), parsed.payload)
    header_b64, payload_b64, signature_b64 = parsed.segments
    obj.segments.update({"header": header_b64, "payload": payload_b64, "signature": signature_b64})
    try:
        valid = jws.validate_compact(obj, key.key, registry=registry)
    except BadSignatureError:
        valid = False
    except JoseError as exc:
        raise Rejected(Reason.KEY_MISMATCH, f"joserfc refused the key: {exc.error}") from None
    except Exception:
        valid = False
    if not valid:
        raise Rejected(Reason.BAD_SIGNATURE, "signature does not verify")


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
