"""Rejection records and the sink port they are submitted to.

Rules of this module:
- A record holds what the token *claimed* (capped, unverified) and the SHA-256 of the token,
  never the token itself nor any part of it.
- `AuditSink.submit` is called on the request path: it must not block or await. Durable sinks
  enqueue and write elsewhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from webhook.reasons import Reason
from webhook.token import TokenFacts


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
        """Flat fields for the decision log line (no token, only its hash)."""
        facts = self.facts  # by hand: dataclasses.asdict deep-copies and was 12 % of a rejection
        return {
            "alg": facts.alg,
            "kid": facts.kid,
            "iss": facts.iss,
            "sub": facts.sub,
            "azp": facts.azp,
            "jti": facts.jti,
            "typ": facts.typ,
            "exp": facts.exp,
            "kind": facts.kind,
            "reason": self.reason.value,
            "detail": self.detail,
            "realm": self.realm,
            "token_sha256": self.token_sha256,
            "client_ip": self.client_ip,
            "user_agent": self.user_agent,
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
