"""The closed set of reasons a token is rejected, and the one exception that carries them.

Rules of this module:
- Every rejection anywhere in the service is a `Rejected(reason, detail)`; nothing else decides a 401.
- `Reason` values are stable API: they appear in logs, metrics, the audit table and the README.
  Add new members at the end; never rename or reuse one.
- `detail` is a short, operator-facing explanation. It may quote claimed (unverified) values that
  are already length-capped, but never the token or any part of it.

Exception tree::

    Rejected          the token (or its absence) does not open a session; carries a Reason
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why the auth hook answered 401. Checked in this order by the verifier."""

    MISSING_TOKEN = "missing_token"  # noqa: S105 - a reason code, not a secret
    """No `Authorization` header, and anonymous access is not configured."""
    MALFORMED_TOKEN = "malformed_token"  # noqa: S105 - a reason code
    """Not a Bearer compact JWS: size cap, 3 segments, strict base64url, JSON object header/payload."""
    HEADER_NOT_ALLOWED = "header_not_allowed"
    """A JOSE header Keycloak never sends: `crit`, `b64`, `jku`, `x5u`, `jwk`, `x5c`, or unregistered."""
    ALG_NOT_ALLOWED = "alg_not_allowed"
    """Header `alg` is not in the configured asymmetric allow-list (covers `none` and HS*)."""
    UNKNOWN_ISSUER = "unknown_issuer"
    """`iss` is not exactly `<issuer base>/realms/<realm>` with a realm we trust."""
    UNKNOWN_REALM = "unknown_realm"
    """The realm name is acceptable but Keycloak says the realm does not exist (negative-cached)."""
    JWKS_UNAVAILABLE = "jwks_unavailable"
    """The realm's keys could not be fetched and no usable cached copy exists."""
    UNKNOWN_KID = "unknown_kid"
    """No signing key with this `kid` in the realm's JWKS, even after the allowed refetch."""
    KEY_MISMATCH = "key_mismatch"
    """The `kid` names a key whose type, `use` or `alg` does not fit the header `alg`."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not verify with the realm's key."""
    EXPIRED = "expired"
    """`exp` is in the past (beyond the clock leeway)."""
    NOT_YET_VALID = "not_yet_valid"
    """`nbf` or `iat` is in the future (beyond the clock leeway)."""
    WRONG_TOKEN_TYPE = "wrong_token_type"  # noqa: S105 - a reason code
    """Payload `typ` is not `Bearer`: an ID or refresh token used as an access token."""
    AUDIENCE_NOT_ALLOWED = "audience_not_allowed"
    """`aud` does not contain any configured audience."""
    AZP_NOT_ALLOWED = "azp_not_allowed"
    """`azp` (the client) is not in the configured allow-list."""
    CLAIMS_INVALID = "claims_invalid"
    """A required claim is missing or of the wrong type (`exp`, `sub`, the Hasura claims...)."""
    REALM_MISMATCH = "realm_mismatch"
    """The tenant or event named in the claims is not the realm's own."""
    ROLE_NOT_ALLOWED = "role_not_allowed"
    """The requested (or default) role is not in `x-hasura-allowed-roles`."""
    SESSION_REVOKED = "session_revoked"
    """The token's session (`sid`) or user (`sub`, issued before) was revoked by a back-channel logout or
    `webhook sessions revoke`; or revocations are uncertain and the token is older than the outage."""
    TOKEN_REPLAYED = "token_replayed"  # noqa: S105 - a reason code
    """A logout token whose `jti` was already taken (back-channel logout endpoint only)."""
    API_KEY_EXPIRED = "api_key_expired"
    """The token comes from an API key (claim `api_key`) whose `expires_at` has passed."""


class Rejected(Exception):
    """The request does not open a session; `reason` says why (see `Reason`)."""

    __slots__ = ("detail", "reason")

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason.value, detail)
        self.reason = reason
        self.detail = detail or reason.value

    def __repr__(self) -> str:
        return f"Rejected({self.reason.value!r}, {self.detail!r})"
