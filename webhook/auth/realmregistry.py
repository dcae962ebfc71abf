"""The strict realm registry: a pattern realm is trusted only if its tenant (and event) are in our database.

Rules of this module:
- Only `tenant-<uuid>[-event-<uuid>]` realms are looked up. Realms named in the configuration
  (TRUSTED_EXTRA_REALMS, PREFETCH_REALMS, the super-admin tenant's realm) are always registered: the
  operator named them, and the super-admin realm must work before any tenant row exists.
- A tenant realm is registered when `tenant.id` exists; an event realm when `election_event.id`
  exists *with that tenant*.
- Answers are cached: registered for `ttl`, unregistered for `negative_ttl`, each kind in its own
  LRU of at most `max_entries` realms, so made-up names never evict registered realms; one lookup
  in flight per realm (waiters share it).
- Lookups are bounded like new-realm JWKS fetches: a global bucket of `lookup_rate` lookups per
  second and at most `max_concurrent` in flight. A lookup refused by either bound, or failed by the
  database, leaves a realm seen registered before (even expired) registered; any other realm is
  refused with `unknown_realm` ("cannot tell"), never let through, at once (no queueing). So tokens
  naming made-up realms cost at most `lookup_rate` queries a second whatever their number.
- `MemoryRealmRegistry` is the fake for tests.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from webhook.core.realms import Realm
from webhook.core.reasons import Reason, Rejected
from webhook.db.datastore import DataStore
from webhook.db.models import ElectionEvent, Tenant


@dataclass(slots=True)
class _Entry:
    registered: bool
    expires: float


class DbRealmRegistry:
    """`RealmRegistry` answered from the `tenant` and `election_event` tables, cached."""

    def __init__(
        self,
        store: DataStore,
        *,
        always: Iterable[str] = (),
        ttl: float = 300.0,
        negative_ttl: float = 10.0,
        max_entries: int = 10000,
        lookup_rate: float = 50.0,
        max_concurrent: int = 4,
        clock: Callable[[], float],
        log: Any,
    ) -> None:
        self._store = store
        self._always = frozenset(always)
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max = max_entries
        self._clock = clock
        self._log = log
        self._rate = lookup_rate
        self._max_concurrent = max_concurrent
        self._budget = lookup_rate
        self._budget_at = clock()
        self._known: OrderedDict[str, _Entry] = OrderedDict()  # registered
        self._unknown: OrderedDict[str, _Entry] = OrderedDict()  # found unregistered
        self._flights: dict[str, asyncio.Task[bool]] = {}
        self.lookups = 0
        self.refused = 0  # lookups refused by the rate or concurrency bound

    async def is_registered(self, realm: Realm) -> bool:
        """Whether `realm` may be trusted (see the module rules)."""
        if realm.tenant_id is None or realm.name in self._always:
            return True
        now = self._clock()
        known = self._known.get(realm.name)
        entry = known or self._unknown.get(realm.name)
        if entry is not None and entry.expires > now:
            (self._known if entry.registered else self._unknown).move_to_end(realm.name)
            return entry.registered
        flight = self._flights.get(realm.name)
        if flight is None:
            refusal = self._refusal(now)
            if refusal is not None:
                self.refused += 1
                if known is not None:
                    return True  # seen registered: stays so while lookups are refused
                raise Rejected(Reason.UNKNOWN_REALM, refusal)
            flight = asyncio.get_running_loop().create_task(self._lookup(realm))
            self._flights[realm.name] = flight
            flight.add_done_callback(lambda _: self._flights.pop(realm.name, None))
        return await asyncio.shield(flight)

    def _refusal(self, now: float) -> str | None:
        """Why a new lookup may not start now (None: it may, and took a token of the bucket)."""
        if len(self._flights) >= self._max_concurrent:
            return "realm registry: too many database lookups in flight (strict registry)"
        budget = min(self._rate, self._budget + (now - self._budget_at) * self._rate)
        self._budget_at = now
        if budget < 1:
            self._budget = budget
            return "realm registry: database lookup rate exceeded (strict registry)"
        self._budget = budget - 1
        return None

    def forget(self, realm_name: str) -> None:
        """Drop what is cached for a realm (its tenant or event was just created here)."""
        self._known.pop(realm_name, None)
        self._unknown.pop(realm_name, None)

    async def _lookup(self, realm: Realm) -> bool:
        self.lookups += 1
        try:
            registered = await self._query(realm)
        except Exception as exc:
            self._log.warning(
                "realm_registry.lookup_failed", realm=realm.name, error=f"{type(exc).__name__}: {exc}"[:300]
            )
            if realm.name in self._known:
                return True
            raise Rejected(Reason.UNKNOWN_REALM, "realm registry unavailable (database error)") from None
        entries, other = (self._known, self._unknown) if registered else (self._unknown, self._known)
        other.pop(realm.name, None)
        entries[realm.name] = _Entry(registered, self._clock() + (self._ttl if registered else self._negative_ttl))
        entries.move_to_end(realm.name)
        while len(entries) > self._max:
            entries.popitem(last=False)
        return registered

    async def _query(self, realm: Realm) -> bool:
        if realm.event_id is None:
            query = select(Tenant.id).where(Tenant.id == realm.tenant_id)
        else:
            query = select(ElectionEvent.id).where(
                ElectionEvent.id == realm.event_id, ElectionEvent.tenant_id == realm.tenant_id
            )
        async with self._store.sessions() as session:
            found = (await session.execute(query.limit(1))).first()
        return found is not None


class MemoryRealmRegistry:
    """The fake: registered realm names in a set; counts lookups."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self.names = set(names)
        self.lookups = 0

    def add(self, realm_name: str) -> None:
        """Register a realm."""
        self.names.add(realm_name)

    async def is_registered(self, realm: Realm) -> bool:
        """Extra realms always; pattern realms when added."""
        self.lookups += 1
        return realm.tenant_id is None or realm.name in self.names


__all__ = ["DbRealmRegistry", "MemoryRealmRegistry"]
