"""Active session revocations, in memory: what the hot path asks after every verification. Pure.

Rules of this module:
- A revocation names a realm and a session (`sid`), or a realm and a user (`sub`) with a cutoff:
  every token of that user issued at or before `before` (its `iat`) is revoked. A `sid` revocation
  covers every token of the session whatever its `iat` (Keycloak never reuses a session id).
- `covers()` is the hot path: at most two dict lookups keyed by (realm, sid) and (realm, sub), and
  nothing at all while no revocation is held. Expired revocations are removed by `prune(now)`, run
  in the background; one still held after its expiry only covers tokens that have expired anyway.
- Memory is bounded by `max_entries`: past it, the revocation that expires first is dropped and the
  set stays `uncertain_until` that revocation's expiry (it can no longer be sure). Revocations only
  come from verified logout tokens and operators, never from what a client sends.
- Applying the same revocation twice changes nothing (replicas get it both from NOTIFY and from
  a catch-up read): a `sid` keeps its latest expiry, a `sub` its latest cutoff and expiry.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Final

NO_CUTOFF: Final = float("-inf")


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation as stored and sent between replicas."""

    realm: str
    sid: str | None
    sub: str | None
    before: float  # sub revocations: tokens with iat <= before are revoked
    expires_at: float  # after it, no token the revocation covers can still be valid
    created_at: float

    def __post_init__(self) -> None:
        if self.sid is None and self.sub is None:
            raise ValueError("a revocation names a sid, a sub or both")


class RevocationSet:
    """The active revocations of one process (see the module rules)."""

    __slots__ = ("_expiry", "_max", "by_sid", "by_sub", "hits", "uncertain_until")

    def __init__(self, *, max_entries: int) -> None:
        # read directly by RevocationService.revoked (the hot path); written only here
        self.by_sid: dict[tuple[str, str], float] = {}  # -> expires_at
        self.by_sub: dict[tuple[str, str], tuple[float, float]] = {}  # -> (before, expires_at)
        self._expiry: list[tuple[float, int, tuple[str, str]]] = []  # heap of (expires_at, kind, key)
        self._max = max_entries
        self.hits = 0
        self.uncertain_until = NO_CUTOFF

    def __len__(self) -> int:
        return len(self.by_sid) + len(self.by_sub)

    def __bool__(self) -> bool:
        return bool(self.by_sid) or bool(self.by_sub)

    def covers(self, realm: str, sid: str | None, sub: str | None, iat: float | None) -> bool:
        """Whether a token of `realm` with these claims is revoked (counts a hit when it is)."""
        if sid is not None and (realm, sid) in self.by_sid:
            self.hits += 1
            return True
        if sub is not None:
            entry = self.by_sub.get((realm, sub))
            # a token without iat cannot prove it is newer than the cutoff: revoked
            if entry is not None and (iat is None or iat <= entry[0]):
                self.hits += 1
                return True
        return False

    def apply(self, revocation: Revocation) -> bool:
        """Hold `revocation`; True when it changed anything (new, or a later cutoff/expiry)."""
        changed = False
        if revocation.sid is not None:
            key = (revocation.realm, revocation.sid)
            old = self.by_sid.get(key)
            if old is None or old < revocation.expires_at:
                self.by_sid[key] = revocation.expires_at
                heapq.heappush(self._expiry, (revocation.expires_at, 0, key))
                changed = True
        elif revocation.sub is not None:
            key = (revocation.realm, revocation.sub)
            current = self.by_sub.get(key)
            if current is None or current[0] < revocation.before or current[1] < revocation.expires_at:
                before = revocation.before if current is None else max(current[0], revocation.before)
                expires = revocation.expires_at if current is None else max(current[1], revocation.expires_at)
                self.by_sub[key] = (before, expires)
                heapq.heappush(self._expiry, (expires, 1, key))
                changed = True
        while len(self) > self._max:
            self._drop_first()
        return changed

    def prune(self, now: float) -> int:
        """Forget revocations expired at `now`; how many were removed."""
        removed = 0
        while self._expiry and self._expiry[0][0] <= now:
            removed += self._pop_first(now)
        return removed

    def uncertain(self, now: float) -> bool:
        """True while a revocation dropped for space could still cover a valid token."""
        return now < self.uncertain_until

    def sessions(self) -> int:
        """Revoked sessions held (`sid` revocations)."""
        return len(self.by_sid)

    def _drop_first(self) -> None:
        while self._expiry:
            expires_at = self._expiry[0][0]
            if self._pop_first(float("inf")):
                self.uncertain_until = max(self.uncertain_until, expires_at)
                return

    def _pop_first(self, now: float) -> int:
        """Pop the heap's first item; remove its entry if the item is current and due (1) else 0."""
        expires_at, kind, key = heapq.heappop(self._expiry)
        if kind == 0:
            if self.by_sid.get(key) == expires_at and expires_at <= now:
                del self.by_sid[key]
                return 1
            return 0
        entry = self.by_sub.get(key)
        if entry is not None and entry[1] == expires_at and expires_at <= now:
            del self.by_sub[key]
            return 1
        return 0


__all__ = ["NO_CUTOFF", "Revocation", "RevocationSet"]
