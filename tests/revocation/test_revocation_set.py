"""The in-memory revocation set: what it covers, idempotence, expiry, and its memory bound."""

from __future__ import annotations

from webhook.revocation.active import Revocation, RevocationSet


def _rev(sid: str | None = None, sub: str | None = None, before: float = 100.0, expires: float = 1000.0) -> Revocation:
    return Revocation(realm="r", sid=sid, sub=sub, before=before, expires_at=expires, created_at=before)


def test_a_sid_revocation_covers_every_token_of_that_session_only() -> None:
    """(realm, sid) is revoked whatever the iat; another sid, or the same sid in another realm, is not."""
    revocations = RevocationSet(max_entries=10)
    assert revocations.apply(_rev(sid="s1"))
    assert revocations.covers("r", "s1", "u", 5000.0)
    assert not revocations.covers("r", "s2", "u", 50.0)
    assert not revocations.covers("other", "s1", "u", 50.0)
    assert revocations.hits == 1


def test_a_sub_revocation_covers_tokens_issued_up_to_its_cutoff() -> None:
    """iat <= before is revoked, later is not, and a token without iat is revoked (it cannot prove it is newer)."""
    revocations = RevocationSet(max_entries=10)
    revocations.apply(_rev(sub="u", before=100.0))
    assert revocations.covers("r", None, "u", 100.0)
    assert not revocations.covers("r", None, "u", 101.0)
    assert revocations.covers("r", None, "u", None)


def test_applying_twice_changes_nothing_and_a_later_cutoff_wins() -> None:
    """The same revocation again is no change; a later cutoff for the user moves it forward, never back."""
    revocations = RevocationSet(max_entries=10)
    assert revocations.apply(_rev(sid="s"))
    assert not revocations.apply(_rev(sid="s"))
    revocations.apply(_rev(sub="u", before=100.0))
    assert revocations.apply(_rev(sub="u", before=200.0))
    assert not revocations.apply(_rev(sub="u", before=150.0))
    assert revocations.covers("r", None, "u", 180.0)


def test_prune_forgets_only_expired_revocations() -> None:
    """Revocations past their expiry are removed; the rest stay."""
    revocations = RevocationSet(max_entries=10)
    revocations.apply(_rev(sid="old", expires=10.0))
    revocations.apply(_rev(sid="new", expires=1000.0))
    assert revocations.prune(500.0) == 1
    assert len(revocations) == 1
    assert revocations.covers("r", "new", None, 0.0)


def test_past_the_bound_the_first_to_expire_is_dropped_and_the_set_is_uncertain_until_then() -> None:
    """At max_entries + 1 the earliest-expiring revocation goes, and uncertain(now) holds until its expiry."""
    revocations = RevocationSet(max_entries=2)
    revocations.apply(_rev(sid="a", expires=300.0))
    revocations.apply(_rev(sid="b", expires=200.0))
    assert not revocations.uncertain(0.0)
    revocations.apply(_rev(sid="c", expires=400.0))
    assert len(revocations) == 2
    assert not revocations.covers("r", "b", None, 0.0)
    assert revocations.uncertain(199.0)
    assert not revocations.uncertain(200.0)
