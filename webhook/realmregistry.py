"""The strict realm registry: a pattern realm is trusted only if its tenant (and event) are in our database.

Rules of this module:
- Only `tenant-<uuid>[-event-<uuid>]` realms are looked up. Realms named in the configuration
  (TRUSTED_EXTRA_REALMS, PREFETCH_REALMS, the super-admin tenant's realm) are always registered: the
  operator named them, and the super-admin realm must work before any tenant row exists.
- A tenant realm is registered when `tenant.id` exists; an event realm when `election_event.id`
  exists *with that tenant*.
- Answers are cached: registered for `ttl`, unregistered for `negative_ttl`, at most `max_entries`
  realms (least recently used evicted); one lookup in flight per realm (waiters share it).
- When the database fails, a realm seen registered before (even expired) stays registered; otherwise
  the token is refused with `unknown_realm` ("cannot tell"), never let through.
- `MemoryRealmRegistry` is the fake for tests.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from webhook.datastore import DataStore
from webhook.models import ElectionEvent, Tenant
from webhook.realms import Realm
from webhook.reasons import Reason, Rejected


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
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._flights: dict[str, asyncio.Task[bool]] = {}
        self.lookups = 0

    async def is_registered(self, realm: Realm) -> bool:
        """Whether `realm` may be trusted (see the module rules)."""
        if realm.tenant_id is None or realm.name in self._always:
            return True
        entry = self._entries.get(realm.name)
        if entry is not None and entry.expires > self._clock():
            self._entries.move_to_end(realm.name)
            return entry.registered
        flight = self._flights.get(realm.name)
        if flight is None:
            flight = asyncio.get_running_loop().create_task(self._lookup(realm))
            self._flights[realm.name] = flight
            flight.add_done_callback(lambda _: self._flights.pop(realm.name, None))
        return await asyncio.shield(flight)

    def forget(self, realm_name: str) -> None:
        """Drop what is cached for a realm (its tenant or event was just created here)."""
        self._entries.pop(realm_name, None)

    async def _lookup(self, realm: Realm) -> bool:
        self.lookups += 1
        try:
            registered = await self._query(realm)
        except Exception as exc:
            stale = self._entries.get(realm.name)
            self._log.warning(
                "realm_registry.lookup_failed", realm=realm.name, error=f"{type(exc).__name__}: {exc}"[:300]
            )
            if stale is not None and stale.registered:
                return True
            raise Rejected(Reason.UNKNOWN_REALM, "realm registry unavailable (database error)") from None
        self._entries[realm.name] = _Entry(
            registered, self._clock() + (self._ttl if registered else self._negative_ttl)
        )
        self._entries.move_to_end(realm.name)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
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
