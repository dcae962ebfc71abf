"""The verified-token cache: SHA-256 of a token -> what verifying it concluded, for a bounded time.

Rules of this module:
- Keys are SHA-256 digests of the token, never the token.
- A positive entry (an `Identity`) lives until `min(exp, verified_at + ttl)`, and only while its
  realm's key material is unchanged: each entry remembers the realm's key generation and is
  dropped when the JWKS cache reports another one, so a removed key stops working at once.
- A negative entry (a rejection) is kept only for reasons that cannot change while the
  configuration and the realm's keys stay the same (`CACHEABLE_REJECTIONS`); time- and
  availability-dependent reasons (`not_yet_valid`, `unknown_kid`, `jwks_unavailable`,
  `unknown_realm`) are always decided afresh.
- Positive and negative entries live in separate LRUs, so a flood of distinct bad tokens can
  never evict the good ones.
- Roles are not cached: `X-Hasura-Role` is applied after the cache, per request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from webhook.core.realms import Realm
from webhook.core.reasons import Reason
from webhook.core.session import Identity
from webhook.core.token import TokenFacts

CACHEABLE_REJECTIONS: Final = frozenset(
    {
        Reason.MALFORMED_TOKEN,
        Reason.HEADER_NOT_ALLOWED,
        Reason.ALG_NOT_ALLOWED,
        Reason.UNKNOWN_ISSUER,
        Reason.KEY_MISMATCH,
        Reason.BAD_SIGNATURE,
        Reason.EXPIRED,
        Reason.WRONG_TOKEN_TYPE,
        Reason.AUDIENCE_NOT_ALLOWED,
        Reason.AZP_NOT_ALLOWED,
        Reason.CLAIMS_INVALID,
        Reason.REALM_MISMATCH,
        Reason.ROLE_NOT_ALLOWED,
    }
)


@dataclass(frozen=True, slots=True)
class CachedRejection:
    """A remembered rejection, with what the token claimed (for the audit of each repeat)."""

    reason: Reason
    detail: str
    facts: TokenFacts
    realm: Realm | None


@dataclass(slots=True)
class _Entry:
    value: Identity | CachedRejection
    realm: str | None
    generation: int
    expires_at: float


class VerifiedTokenCache:
    """Bounded LRU caches of verification outcomes keyed by token digest."""

    __slots__ = ("_bad", "_generation_of", "_good", "_max_bad", "_max_good", "_now", "_ttl", "hits", "misses")

    def __init__(
        self,
        *,
        max_entries: int,
        max_rejections: int,
        ttl: float,
        generation_of: Callable[[str], int],
        wall_clock: Callable[[], float],
    ) -> None:
        self._good: OrderedDict[bytes, _Entry] = OrderedDict()
        self._bad: OrderedDict[bytes, _Entry] = OrderedDict()
        self._max_good = max_entries
        self._max_bad = max_rejections
        self._ttl = ttl
        self._generation_of = generation_of
        self._now = wall_clock
        self.hits = 0
        self.misses = 0

    def get(self, digest: bytes) -> Identity | CachedRejection | None:
        """The cached outcome for this token digest, if still valid (positive entries looked up first:
        this runs on every request)."""
        store = self._good
        entry = store.get(digest)
        if entry is None:
            store = self._bad
            entry = store.get(digest)
            if entry is None:
                self.misses += 1
                return None
        if entry.expires_at <= self._now() or (
            entry.realm is not None and self._generation_of(entry.realm) != entry.generation
        ):
            del store[digest]
            self.misses += 1
            return None
        store.move_to_end(digest)
        self.hits += 1
        return entry.value

    def put_identity(self, digest: bytes, identity: Identity) -> None:
        """Remember a verified identity until its `exp` (or the TTL, whichever is first)."""
        if self._max_good <= 0:
            return
        realm = identity.realm.name
        expires = min(identity.exp, self._now() + self._ttl)
        self._store(self._good, self._max_good, digest, _Entry(identity, realm, self._generation_of(realm), expires))

    def put_rejection(self, digest: bytes, rejection: CachedRejection) -> None:
        """Remember a rejection whose reason cannot change for this token (see module rules)."""
        if self._max_bad <= 0 or rejection.reason not in CACHEABLE_REJECTIONS:
            return
        realm = rejection.realm.name if rejection.realm is not None else None
        generation = self._generation_of(realm) if realm is not None else 0
        entry = _Entry(rejection, realm, generation, self._now() + self._ttl)
        self._store(self._bad, self._max_bad, digest, entry)

    @staticmethod
    def _store(store: OrderedDict[bytes, _Entry], cap: int, digest: bytes, entry: _Entry) -> None:
        store[digest] = entry
        store.move_to_end(digest)
        while len(store) > cap:
            store.popitem(last=False)

    def __len__(self) -> int:
        return len(self._good) + len(self._bad)

    def sizes(self) -> tuple[int, int]:
        """(positive entries, negative entries)."""
        return len(self._good), len(self._bad)
