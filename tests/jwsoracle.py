"""joserfc as the oracle of our JWS path: the same token and JWKS through both, verdicts compared.

Our path (webhook/core/token.py: parse once, `cryptography` verify with the key joserfc imported) replaced
joserfc's `jws.validate_compact`; this module holds it to joserfc on two layers:

1. Signature, exact: for every key of the set that serves the token's `alg`, our `verify_signature`
   accepts exactly when joserfc's `jws.validate_compact` (the call it replaced, with that key and an
   allow-list of the key's algorithms) accepts, both when it hashes the signing input itself and
   when it is given the one-pass `digests(token)` the verifier computes (the `Prehashed` path).
2. Whole JWS, against `jws.deserialize_compact(token, KeySet(JWKS as published), algorithms=allowed)`:
   - when ours accepts, joserfc accepts (ours is never more permissive), the one exception being a
     header segment over joserfc's 512-character cap (ours allows 1,024), which joserfc then accepts
     with the cap raised;
   - when joserfc accepts and ours refuses, one of our documented stricter rules applies
     (`stricter_rule`) and our reason is that rule's reason code.

Used by tests/contract/test_jws_oracle.py (hypothesis mutations) and by every request of the attack
battery (tests/security/support.py checks each token it sends).
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Mapping
from typing import Any, Final

import orjson
from joserfc import jws
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from webhook.core.keys import RealmKeys, parse_jwks
from webhook.core.reasons import Reason, Rejected
from webhook.core.token import ALLOWED_HEADERS, check_algorithm, digests, parse, verify_signature

MAX_TOKEN: Final = 16384
JOSERFC_HEADER_CAP: Final = 512


class _WideHeaderRegistry(JWSRegistry):
    max_header_length = 1024


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def ours(token: str, keys: RealmKeys, allowed: frozenset[str]) -> Reason | None:
    """None if our JWS path accepts `token` with this key set, else the reason it refuses it."""
    try:
        parsed = parse(token, max_bytes=MAX_TOKEN)
        check_algorithm(parsed, allowed)
        kid = parsed.kid
        key = keys.by_kid.get(kid) if kid is not None else None
        if key is None:
            raise Rejected(Reason.UNKNOWN_KID, "no such kid")
        verify_signature(parsed, key, digests(token))  # as the verifier calls it
    except Rejected as exc:
        return exc.reason
    return None


def joserfc_accepts(token: str, keyset: KeySet, allowed: frozenset[str], *, wide: bool = False) -> bool:
    """Whether joserfc's `deserialize_compact` accepts `token` with the published key set."""
    registry = (_WideHeaderRegistry if wide else JWSRegistry)(algorithms=sorted(allowed))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc warns that EdDSA is deprecated (RFC 9864)
            jws.deserialize_compact(token, keyset, registry=registry)
    except Exception:  # any refusal, JoseError or not (joserfc raises TypeError on some headers)
        return False
    return True


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({name for name, _ in pairs}) != len(pairs):
        raise ValueError("duplicate member")
    return dict(pairs)


def stricter_rule(token: str) -> Reason | None:
    """The reason of the first rule of ours that joserfc does not have which `token` breaks, if any.

    Rules: at most MAX_TOKEN_BYTES (16,384 by default; joserfc allows 129,536); both segments strict
    RFC 8259 JSON (no byte-order mark, no NaN/Infinity, valid UTF-8: Python's json accepts all
    three), JSON objects, without duplicate member names (joserfc keeps the last duplicate and never
    parses the payload); header members only alg/kid/typ (joserfc allows registered ones such as
    `jku`, `x5t`, `cty`, and `b64`/`crit`); `typ` a string; a `kid` always (joserfc uses the only
    key of a one-key set for a token without one).
    """
    if len(token) > MAX_TOKEN:
        return Reason.MALFORMED_TOKEN
    segments = token.split(".")
    try:
        raw = [b64url_decode(segment) for segment in segments[:2]]
        for data in raw:
            orjson.loads(data)
        header, claims = (json.loads(data, object_pairs_hook=_pairs) for data in raw)
    except ValueError:
        return Reason.MALFORMED_TOKEN
    if type(header) is not dict or type(claims) is not dict:
        return Reason.MALFORMED_TOKEN
    if header.keys() - ALLOWED_HEADERS:
        return Reason.HEADER_NOT_ALLOWED
    if "typ" in header and type(header["typ"]) is not str:
        return Reason.MALFORMED_TOKEN
    if "kid" not in header:
        return Reason.UNKNOWN_KID
    return None


def signature_disagreements(token: str, keys: RealmKeys) -> list[str]:
    """Layer 1: keys (by kid) for which our signature check and joserfc's `validate_compact` differ."""
    try:
        parsed = parse(token, max_bytes=MAX_TOKEN)
    except Rejected:
        return []
    header, payload, signature = token.split(".")
    out = []
    for key in keys.by_kid.values():
        if parsed.alg not in key.algorithms:
            continue  # both paths refuse before any cryptography (key_mismatch)
        verdicts = set()
        for hashed in (None, digests(token)):
            try:
                verify_signature(parsed, key, hashed)
                verdicts.add(True)
            except Rejected:
                verdicts.add(False)
        if len(verdicts) != 1:
            out.append(f"kid {key.kid[:40]!r}: ours with and without the one-pass digest disagree")
            continue
        mine = verdicts.pop()
        obj = jws.CompactSignature(dict(parsed.header), b64url_decode(payload))
        obj.segments.update({"header": header.encode(), "payload": payload.encode(), "signature": signature.encode()})
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                registry = JWSRegistry(algorithms=sorted(key.algorithms))
                theirs = bool(jws.validate_compact(obj, key.key, registry=registry))
        except Exception:
            theirs = False
        if mine != theirs:
            out.append(f"kid {key.kid[:40]!r}: ours {'accepts' if mine else 'refuses'}, joserfc the opposite")
    return out


class Oracle:
    """One published JWKS and allow-list, imported once by both sides."""

    def __init__(self, jwks: Mapping[str, Any], allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.keys = parse_jwks(orjson.dumps(jwks), allowed)
        self.keyset = KeySet.import_key_set(json.loads(orjson.dumps(jwks)))

    def verdicts(self, token: str) -> tuple[Reason | None, bool]:
        """(our reason or None if we accept, whether joserfc accepts)."""
        return ours(token, self.keys, self.allowed), joserfc_accepts(token, self.keyset, self.allowed)

    def disagreements(self, token: str) -> list[str]:
        """Everything on which our path and joserfc disagree for `token`."""
        problems = signature_disagreements(token, self.keys)
        mine, theirs = self.verdicts(token)
        if mine is None and not theirs:
            header_cap = len(token.split(".", maxsplit=1)[0]) > JOSERFC_HEADER_CAP
            if not (header_cap and joserfc_accepts(token, self.keyset, self.allowed, wide=True)):
                problems.append("ours accepts a token joserfc refuses")
        elif mine is not None and theirs:
            rule = stricter_rule(token)
            if rule is None:
                problems.append(f"ours refuses ({mine.value}) a token joserfc accepts; no stricter rule explains it")
            elif rule is not mine:
                problems.append(f"ours refuses with {mine.value}, but the stricter rule broken is {rule.value}")
        return problems
