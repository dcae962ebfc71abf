"""Rejection records and the sink port they are submitted to.

Rules of this module:
- A record holds what the token *claimed* (capped, unverified) and the SHA-256 of the token,
  never the token itself nor any part of it. Whatever leaves a record (a row, a log line) passes
  `webhook.core.safetext` first (NUL, lone surrogates, length).
- `AuditSink.submit` is called on the request path: it must not block or await. Durable sinks
  enqueue and write elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from webhook.core.reasons import Reason
from webhook.core.safetext import safe_optional, safe_text
from webhook.core.token import TokenFacts

CLAIM_CHARS: Final = 256  # claimed strings copied into rows and log lines
FORWARDED_CHARS: Final = 256  # forwarded client values (IP, user agent, request id)
DETAIL_CHARS: Final = 512


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """One rejected request, as operators will query it."""

    at: float
    reason: Reason
    detail: str
    source: Literal["hook", "action"]
    hook_mode: str
    token_sha256: str | None
    realm: str | None
    facts: TokenFacts
    client_ip: str | None
    user_agent: str | None
    request_id: str

    def as_log_fields(self) -> dict[str, Any]:
        """Flat fields for the decision log line (no token, only its hash); copied strings made safe."""
        facts = self.facts  # by hand: dataclasses.asdict deep-copies and was 12 % of a rejection
        return {
            "alg": safe_optional(facts.alg, CLAIM_CHARS),
            "kid": safe_optional(facts.kid, CLAIM_CHARS),
            "iss": safe_optional(facts.iss, CLAIM_CHARS),
            "sub": safe_optional(facts.sub, CLAIM_CHARS),
            "azp": safe_optional(facts.azp, CLAIM_CHARS),
            "jti": safe_optional(facts.jti, CLAIM_CHARS),
            "typ": safe_optional(facts.typ, CLAIM_CHARS),
            "exp": facts.exp,
            "kind": facts.kind,
            "reason": self.reason.value,
            "detail": safe_text(self.detail, DETAIL_CHARS),
            "realm": self.realm,
            "token_sha256": self.token_sha256,
            "client_ip": safe_optional(self.client_ip, FORWARDED_CHARS),
            "user_agent": safe_optional(self.user_agent, FORWARDED_CHARS),
            "hook_mode": self.hook_mode,
        }


def token_digest(token: str | None) -> str | None:
    """Hex SHA-256 of the token's bytes (the only trace of a token we keep)."""
    if token is None:
        return None
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AuditSink(Protocol):
    """Where rejection records go. `submit` never blocks."""

    def submit(self, record: RejectionRecord) -> None: ...


class NullSink:
    """Drops records (the decision log line still carries them)."""

    def submit(self, record: RejectionRecord) -> None:
        """Accept and forget."""


class MemorySink:
    """Keeps records in a list: the fake for tests."""

    def __init__(self) -> None:
        self.records: list[RejectionRecord] = []

    def submit(self, record: RejectionRecord) -> None:
        """Append the record."""
        self.records.append(record)
