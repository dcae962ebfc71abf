"""The `api_key` claim: how a token says it was issued to an API key, and until when the key lives. Pure.

Rules of this module:
- API keys are Keycloak clients built from the service's template (`webhook.provisioning.apikeyclient`),
  whose hardcoded-claim mappers put `{"api_key": {"name": <key name>, "exp": <epoch seconds>}}` in every
  access token (`exp` only when the key expires). The hook learns the key's expiry from the verified
  token itself: no Keycloak call per request.
- Absent claim: an ordinary (user) token. A present claim must be well formed (an object with a
  non-empty string `name` of at most 256 characters and, if present, a finite number `exp`), else the
  token is refused (`claims_invalid`): a token that says it is an API key is held to it.
- The claim can only restrict a token (an expiry), never widen what it may do; a tenant's realm admin
  who forges it gains nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from webhook.core.reasons import Reason, Rejected

NAME_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]")
"""What a key's name (its client id) may be: 3 to 63 of `a-z0-9-`, no `-` at either end."""

CLAIM: Final = "api_key"
NAME: Final = "name"
EXPIRY: Final = "exp"
MAX_NAME_CHARS: Final = 256
KIND_USER: Final = "user"
KIND_API_KEY: Final = "api_key"


@dataclass(frozen=True, slots=True)
class ApiKeyClaim:
    """What a verified token says about the API key it was issued to."""

    name: str
    expires_at: float | None


def api_key_claim(claims: Mapping[str, Any]) -> ApiKeyClaim | None:
    """The token's API key claim (None: not an API key's token); `Rejected(claims_invalid)` if malformed."""
    value = claims.get(CLAIM)
    if value is None:
        return None
    if type(value) is not dict:
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM} is not an object")
    name = value.get(NAME)
    if type(name) is not str or not name or len(name) > MAX_NAME_CHARS:
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM}.{NAME} is not a non-empty string")
    expiry = value.get(EXPIRY)
    if expiry is None:
        return ApiKeyClaim(name, None)
    if type(expiry) is str and expiry.isdigit():  # a hardcoded "long" claim some versions send as text
        expiry = int(expiry)
    if (type(expiry) is not int and type(expiry) is not float) or not math.isfinite(expiry):
        raise Rejected(Reason.CLAIMS_INVALID, f"{CLAIM}.{EXPIRY} is not a number")
    return ApiKeyClaim(name, float(expiry))


def check_not_expired(claim: ApiKeyClaim | None, now: float) -> None:
    """`Rejected(api_key_expired)` once the key's expiry has passed (no leeway: the service set it)."""
    if claim is not None and claim.expires_at is not None and claim.expires_at <= now:
        raise Rejected(Reason.API_KEY_EXPIRED, f"API key {claim.name!r} expired")


__all__ = [
    "CLAIM",
    "EXPIRY",
    "KIND_API_KEY",
    "KIND_USER",
    "NAME",
    "ApiKeyClaim",
    "api_key_claim",
    "check_not_expired",
]
