"""The multi-realm JWKS cache: one entry per realm, fetched only from the configured Keycloak.

Rules of this module:
- The only URL ever fetched is `RealmPolicy.jwks_url(realm)`: configured base + validated name.
  Nothing from a token (`iss`, `jku`, `x5u`...) reaches the HTTP client.
- Fetches are bounded: total timeout, body size cap, no redirects, at most
  `max_concurrent_fetches` in flight (a request needing one more is refused at once, it never
  queues), at most one in flight per realm (single-flight; waiters share its result).
- A realm's keys are fresh for `ttl`; past it they are still served (and refreshed in the
  background) for `max_stale` more, which is what keeps the hook up while Keycloak is down.
- An unknown `kid` triggers a refetch at most once per `min_refetch` per realm. A failed fetch
  is not retried for `retry`. A realm Keycloak says does not exist is remembered for `negative_ttl`.
- At most `max_realms` entries are held (LRU); prefetched realms are pinned and never evicted.
  Entries without keys (unknown or failed realms) are evicted before any realm with keys, so a
  flood of made-up realm names can not push the real ones out.
- Fetching a realm that has no keys yet (a name never loaded, or one Keycloak said is missing)
  takes a token from a global bucket of `new_realm_fetch_rate` per second: tokens naming
  thousands of pattern-valid realms cause at most that many fetches a second, not one each.
- Time is an injected monotonic clock, so every rule above is tested by counting fetches.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from webhook.auth.jwksfetch import CachePolicy, JwksFetcher
from webhook.core.keys import RealmKeys, SigningKey
from webhook.core.realms import Realm
from webhook.core.reasons import Reason, Rejected
from webhook.observability.collectors import RealmHealth
from webhook.observability.metrics import Metrics

Clock = Callable[[], float]
RATE_LIMITED: Final = "new-realm fetch rate exceeded"
#: Key generations, global to the process: a realm's entry never reuses a number another entry (its
#: own earlier one, evicted, included) had, so an outcome cached under an old generation never
#: becomes valid again after an eviction and a refetch.
_GENERATIONS: Final = itertools.count(1)


def _new_generation() -> int:
    return next(_GENERATIONS)


@dataclass(slots=True)
class _Entry:
    realm: Realm
    keys: RealmKeys | None = None
    fetched_at: float = float("-inf")  # last successful fetch
    attempted_at: float = float("-inf")  # last fetch started
    missing_until: float = float("-inf")
    error: str = ""
    generation: int = field(default_factory=_new_generation)  # renewed whenever the key material changes
    inflight: asyncio.Task[None] | None = None
    pinned: bool = False
    failures: int = 0  # failed fetches since the last successful one (404 included)
    fetches: dict[str, int] = field(default_factory=dict)  # outcome -> count, kept for pinned realms


RealmState = Literal["fresh", "stale", "missing", "failed", "loading"]


class JwksCache:
    """Keys per realm with TTL, stale-if-error, single-flight refetch, negative cache and LRU."""

    def __init__(
        self, fetcher: JwksFetcher, *, policy: CachePolicy, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        self._fetcher = fetcher
        self._policy = policy
        self._clock = clock
        self._metrics = metrics
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight = 0
        self._new_realm_budget = float(policy.new_realm_fetch_rate)
        self._new_realm_budget_at = clock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_change: Callable[[str], None] | None = None  # realm name; the token cache listens

    @property
    def policy(self) -> CachePolicy:
        """The timing and size rules this cache applies."""
        return self._policy

    # ---- request path -------------------------------------------------------------------

    def cached_key(self, realm: Realm, kid: str) -> SigningKey | None:
        """The key if a fresh or stale-usable entry has it; no IO, no awaiting (the hot path)."""
        entry = self._entries.get(realm.name)
        if entry is None or entry.keys is None:
            return None
        now = self._clock()
        age = now - entry.fetched_at
        if age >= self._policy.ttl:
            if age >= self._policy.ttl + self._policy.max_stale:
                return None
            self._refresh_in_background(entry, now)
        return entry.keys.by_kid.get(kid)

    async def key_for(self, realm: Realm, kid: str) -> SigningKey:
        """The realm's signing key `kid`, fetching if the rules allow; `Rejected` otherwise."""
        key = self.cached_key(realm, kid)
        if key is not None:
            return key
        now = self._clock()
        entry = self._entry(realm)
        if entry.missing_until > now:
            raise Rejected(Reason.UNKNOWN_REALM, "Keycloak says this realm does not exist (cached)")
        if self._usable(entry, now):
            # Keys loaded but no such kid: maybe a rotation. Refetch, at most once per min_refetch.
            if now - entry.attempted_at < self._policy.min_refetch and entry.inflight is None:
                raise Rejected(Reason.UNKNOWN_KID, "no key with this kid (refetch not due yet)")
        elif now - entry.attempted_at < self._policy.retry and entry.inflight is None:
            raise Rejected(Reason.JWKS_UNAVAILABLE, f"last fetch failed: {entry.error or 'unknown'}")
        if entry.keys is None and entry.inflight is None and not entry.pinned and not self._new_realm_fetch(now):
            entry.attempted_at = now
            entry.error = RATE_LIMITED
            raise Rejected(Reason.JWKS_UNAVAILABLE, "too many realms without keys fetched; retry shortly")
        await self._refresh(entry)
        now = self._clock()
        if entry.missing_until > now:
            raise Rejected(Reason.UNKNOWN_REALM, "Keycloak says this realm does not exist")
        if not self._usable(entry, now):
            raise Rejected(Reason.JWKS_UNAVAILABLE, f"keys unavailable: {entry.error or 'unknown'}")
        assert entry.keys is not None  # noqa: S101 - _usable checked it
        key = entry.keys.by_kid.get(kid)
        if key is None:
            raise Rejected(Reason.UNKNOWN_KID, "no key with this kid in the realm's JWKS")
        return key

    # ---- fetching -----------------------------------------------------------------------

    def _new_realm_fetch(self, now: float) -> bool:
        """Take one token of the new-realm fetch bucket (refilled at `new_realm_fetch_rate`/s)."""
        rate = self._policy.new_realm_fetch_rate
        budget = min(rate, self._new_realm_budget + (now - self._new_realm_budget_at) * rate)
        self._new_realm_budget_at = now
        if budget < 1:
            self._new_realm_budget = budget
            if self._metrics is not None:
                self._metrics.fetch["rate_limited"].inc()
            return False
        self._new_realm_budget = budget - 1
        return True

    def _usable(self, entry: _Entry, now: float) -> bool:
        return entry.keys is not None and now - entry.fetched_at < self._policy.ttl + self._policy.max_stale

    def _entry(self, realm: Realm) -> _Entry:
        entry = self._entries.get(realm.name)
        if entry is not None:
            self._entries.move_to_end(realm.name)
            return entry
        entry = _Entry(realm)
        self._entries[realm.name] = entry
        self._evict(keep=realm.name)
        return entry

    def _evict(self, keep: str = "") -> None:
        excess = len(self._entries) - self._policy.max_realms
        if excess > 0:
            held = [(name, e) for name, e in self._entries.items() if not e.pinned and name != keep]
            keyless = [name for name, e in held if e.keys is None]
            keyed = [name for name, e in held if e.keys is not None]
            victims = (keyless + keyed)[:excess]
            for name in victims:
                del self._entries[name]
        if self._metrics is not None:
            self._metrics.realms_cached.set(len(self._entries))

    async def _refresh(self, entry: _Entry) -> None:
        """Start (or join) the single fetch of this realm and wait for it to finish."""
        task = entry.inflight or self._start_fetch(entry)
        if task is None:
            raise Rejected(Reason.JWKS_UNAVAILABLE, "too many JWKS fetches in flight")
        # shield: a caller that gives up (client gone) must not cancel the shared fetch
        await asyncio.shield(task)

    def _start_fetch(self, entry: _Entry) -> asyncio.Task[None] | None:
        if self._inflight >= self._policy.max_concurrent_fetches:
            if self._metrics is not None:
                self._metrics.fetch["capacity"].inc()
            return None
        self._inflight += 1
        entry.attempted_at = self._clock()
        task = asyncio.get_running_loop().create_task(self._fetch_into(entry))
        entry.inflight = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fetch_into(self, entry: _Entry) -> None:
        try:
            result = await self._fetcher.fetch(entry.realm)
        finally:
            self._inflight -= 1
            entry.inflight = None
        if self._metrics is not None:
            self._metrics.fetch[result.outcome].inc()
        if entry.pinned:
            entry.fetches[result.outcome] = entry.fetches.get(result.outcome, 0) + 1
        entry.failures = 0 if result.keys is not None else entry.failures + 1
        now = self._clock()
        if result.keys is not None:
            changed = entry.keys is None or entry.keys.fingerprint != result.keys.fingerprint
            entry.keys = result.keys
            entry.fetched_at = now
            entry.error = ""
            entry.missing_until = float("-inf")
            if changed:
                entry.generation = _new_generation()
                if self.on_change is not None:
                    self.on_change(entry.realm.name)
        elif result.missing:
            entry.error = result.error
            if entry.keys is not None:
                entry.generation = _new_generation()
            entry.keys = None
            entry.missing_until = now + self._policy.negative_ttl
            if self.on_change is not None:
                self.on_change(entry.realm.name)
        else:
            entry.error = result.error

    def _refresh_in_background(self, entry: _Entry, now: float) -> None:
        if entry.inflight is None and now - entry.attempted_at >= self._policy.retry:
            self._start_fetch(entry)

    # ---- lifecycle ----------------------------------------------------------------------

    def pin(self, realms: Iterable[Realm]) -> None:
        """Hold these realms forever (prefetched, refreshed, never evicted)."""
        for realm in realms:
            self._entry(realm).pinned = True

    def unpin(self, realm_name: str) -> None:
        """Forget a pinned realm and its keys (it was deleted): it leaves `/jwks` at once."""
        entry = self._entries.get(realm_name)
        if entry is not None and entry.pinned:
            del self._entries[realm_name]
            if self._metrics is not None:
                self._metrics.realms_cached.set(len(self._entries))

    async def load(self, realm: Realm) -> bool:
        """Pin `realm` and fetch its keys now unless they are fresh; whether it has keys afterwards."""
        entry = self._entry(realm)
        entry.pinned = True
        if entry.keys is None or self._clock() - entry.fetched_at >= self._policy.ttl or entry.inflight is not None:
            with contextlib.suppress(Rejected):
                await self._refresh(entry)
        return self._usable(entry, self._clock())

    async def refresh_due(self) -> int:
        """Fetch every held realm whose keys are past their TTL or whose last fetch failed.

        An unpinned realm that never got keys is retried here only if a fetch was actually made and
        failed (Keycloak down, garbage...), and then through the new-realm budget; one that the
        budget refused is not: a request that needs it will ask again. Retrying those would let a
        flood of made-up realm names spend the budget that a real, newly created realm needs.
        Returns the number of fetches started. Called by the background refresher; tests call it
        directly with a fake clock.
        """
        now = self._clock()
        started = []
        for entry in list(self._entries.values()):
            if entry.missing_until > now or entry.inflight is not None:
                continue
            due = now - entry.fetched_at >= self._policy.ttl
            if due and now - entry.attempted_at >= self._policy.retry:
                # see the docstring: never retry what the budget refused; retry real failures
                # (Keycloak down, garbage...) only through the same budget
                keyless = entry.keys is None and not entry.pinned
                if keyless and (entry.error == RATE_LIMITED or not self._new_realm_fetch(now)):
                    continue
                task = self._start_fetch(entry)
                if task is not None:
                    started.append(task)
        if started:
            await asyncio.gather(*started)
        return len(started)

    async def run_refresher(self, interval: float) -> None:
        """Forever: sleep `interval` seconds, then refresh what is due (fetch failures never end it)."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh_due()

    async def close(self) -> None:
        """Cancel fetches in flight."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---- introspection ------------------------------------------------------------------

    def state(self, realm_name: str) -> RealmState | None:
        """How a held realm stands (None if not held)."""
        entry = self._entries.get(realm_name)
        if entry is None:
            return None
        now = self._clock()
        if entry.missing_until > now:
            return "missing"
        if entry.keys is not None:
            if now - entry.fetched_at < self._policy.ttl:
                return "fresh"
            if self._usable(entry, now):
                return "stale"
        if entry.inflight is not None:
            return "loading"
        return "failed"

    def generation(self, realm_name: str) -> int:
        """Renewed (never to a number used before in this process) when the realm's keys change; -1 if not held."""
        entry = self._entries.get(realm_name)
        return -1 if entry is None else entry.generation

    def realm_keys(self) -> dict[str, RealmKeys]:
        """The usable key sets of every held realm (for `/jwks` and diagnostics)."""
        now = self._clock()
        return {name: e.keys for name, e in self._entries.items() if e.keys is not None and self._usable(e, now)}

    def pinned_health(self) -> list[RealmHealth]:
        """How each prefetched (pinned) realm stands, for the per-realm metrics (a bounded set)."""
        now = self._clock()
        health = []
        for name, entry in self._entries.items():
            if not entry.pinned:
                continue
            state = self.state(name) or "failed"
            age = None if entry.keys is None else max(0.0, now - entry.fetched_at)
            usable = 0.0
            if age is not None:
                usable = max(0.0, self._policy.ttl + self._policy.max_stale - age)
            health.append(RealmHealth(name, state, entry.failures, age, usable, dict(entry.fetches)))
        return health

    def __len__(self) -> int:
        return len(self._entries)

    def last_error(self, realm_name: str) -> str:
        entry = self._entries.get(realm_name)
        return "" if entry is None else entry.error
