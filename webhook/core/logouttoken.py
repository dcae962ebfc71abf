"""OIDC Back-Channel Logout 1.0 logout tokens: the claim checks after the signature. Pure.

Rules of this module:
- The token is parsed, its issuer bound to a realm and its signature verified exactly as an access
  token's (`Verifier.verify_logout`); this module checks what section 2.6 of the spec asks of the
  claims, in order: header `typ` (when present) is `logout+jwt`; `iat` and `exp` present and valid
  with the leeway; `aud` present and, when configured, naming an allowed client; `events` an
  object holding the back-channel logout member (an object); `sid` and/or `sub` present; `nonce`
  absent; `jti` present (the caller makes sure it is never taken twice).
- What Keycloak 26 sends (`TokenManager.initLogoutToken`): header `{"alg", "typ": "logout+jwt", "kid"}`,
  claims `iat`, `exp` (iat + 120), `jti`, `iss`, `aud` (the client id), `sub`, `typ: "Logout"`, `sid`
  (when `backchannel.logout.session.required`), `events`.
- Strings copied out (`sid`, `sub`, `jti`) are capped in length; a longer one is a rejection, never
  truncated (a truncated sid could name another session).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.core.reasons import Reason, Rejected
from webhook.core.token import ParsedToken, _time_claim

BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TYP: Final = "logout+jwt"
MAX_ID_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class LogoutClaims:
    """What a verified logout token says."""

    sid: str | None
    sub: str | None
    jti: str
    iat: float
    exp: float


def _optional_id(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if type(value) is not str or not value or len(value) > MAX_ID_CHARS:
        raise Rejected(Reason.CLAIMS_INVALID, f"{name} is not a string of 1..{MAX_ID_CHARS} characters")
    return value


def check_logout_claims(parsed: ParsedToken, *, leeway: int, audiences: frozenset[str], now: float) -> LogoutClaims:
    """The logout token's claims if they satisfy the spec (see module rules); `Rejected` otherwise."""
    typ = parsed.header.get("typ")
    if typ is not None and typ.lower() != LOGOUT_TYP:
        raise Rejected(Reason.WRONG_TOKEN_TYPE, "header typ is not logout+jwt")
    claims = parsed.claims
    iat = _time_claim(claims, "iat", required=True) or 0.0  # required=True: never None
    exp = _time_claim(claims, "exp", required=True) or 0.0
    if exp <= now - leeway:
        raise Rejected(Reason.EXPIRED, "exp is in the past")
    if iat > now + leeway:
        raise Rejected(Reason.NOT_YET_VALID, "iat is in the future")
    aud = claims.get("aud")
    auds = [aud] if type(aud) is str else aud if type(aud) is list else []
    if not auds or not all(type(a) is str and a for a in auds):
        raise Rejected(Reason.CLAIMS_INVALID, "aud is missing")
    if audiences and not any(a in audiences for a in auds):
        raise Rejected(Reason.AUDIENCE_NOT_ALLOWED, "aud names no allowed client")
    events = claims.get("events")
    if type(events) is not dict or type(events.get(BACKCHANNEL_LOGOUT_EVENT)) is not dict:
        raise Rejected(Reason.CLAIMS_INVALID, "events lacks the back-channel logout event")
    sid = _optional_id(claims, "sid")
    sub = _optional_id(claims, "sub")
    if sid is None and sub is None:
        raise Rejected(Reason.CLAIMS_INVALID, "neither sid nor sub")
    if "nonce" in claims:
        raise Rejected(Reason.CLAIMS_INVALID, "nonce is present (an ID token?)")
    jti = _optional_id(claims, "jti")
    if jti is None:
        raise Rejected(Reason.CLAIMS_INVALID, "jti is missing")
    return LogoutClaims(sid=sid, sub=sub, jti=jti, iat=iat, exp=exp)


__all__ = ["BACKCHANNEL_LOGOUT_EVENT", "LOGOUT_TYP", "LogoutClaims", "check_logout_claims"]
