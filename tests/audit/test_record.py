"""Rejection records as they reach the decision log."""

from __future__ import annotations

from webhook.audit.record import RejectionRecord
from webhook.core.reasons import Reason
from webhook.core.token import TokenFacts


def test_log_fields_carry_every_fact() -> None:
    """A rejection's log fields hold every claimed fact (hand-built, so a new fact must be added there)."""
    facts = TokenFacts(alg="RS256", kid="k", iss="i", sub="s", azp="a", jti="j", typ="Bearer", exp=1)
    record = RejectionRecord(1.0, Reason.EXPIRED, "d", "hook", "GET", "h" * 64, "r", facts, None, None, "rid")
    fields = record.as_log_fields()
    assert set(TokenFacts._fields) <= fields.keys()
    assert fields["kid"] == "k"
    assert fields["reason"] == "expired"
