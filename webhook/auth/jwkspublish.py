"""Which realms `/jwks` publishes: the configured ones plus every realm the database knows as provisioned.

Rules of this module:
- Published = PREFETCH_REALMS + the super-admin tenant's realm + every realm whose provisioning job
  is `done`. Each published realm is pinned in the JWKS cache (kept, refreshed, never evicted), so
  its keys are in `/jwks` whether or not a token of it was ever seen (Hasura in JWT mode never
  calls the hook, so it cannot teach the cache).
- `add(realm)` pins a realm and loads its keys now; the worker awaits it before it marks a job
  `done`, so a new event's signing key is in `/jwks` before the job reports `done`. A realm whose
  keys cannot be loaded raises `PublishError` (the job is retried).
- `sync()` re-reads the done jobs (the lifespan runs it every `interval` seconds): realms provisioned
  by another replica are added, realms whose job is gone are unpinned (their keys leave `/jwks`),
  and a realm Keycloak deleted drops out of `/jwks` on its next refresh (the cache's negative answer).
- `max_age()` is the `Cache-Control` of `/jwks`: never longer than the sync interval, so a replica's
  answer is not cached by Hasura past the time it would have picked up another replica's realm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from webhook.auth.jwks import JwksCache
from webhook.core.realms import RealmPolicy
from webhook.db.datastore import DataStore
from webhook.db.models import RealmProvisioningJob


class PublishError(Exception):
    """A provisioned realm's keys could not be loaded (Keycloak answered no usable JWKS)."""


class PublishedRealms:
    """The set behind `/jwks`: configured realms plus provisioned ones, pinned in the cache."""

    def __init__(
        self,
        cache: JwksCache,
        realms: RealmPolicy,
        *,
        configured: Iterable[str],
        store: DataStore | None,
        interval: float,
        log: Any,
    ) -> None:
        self._cache = cache
        self._realms = realms
        self._configured = frozenset(configured)
        self._store = store
        self.interval = interval
        self._log = log
        self._provisioned: set[str] = set()  # read from the database (done jobs)
        self._local: set[str] = set()  # added by this process's worker, until the database says done

    @property
    def names(self) -> frozenset[str]:
        """Every realm published now."""
        return self._configured | self._provisioned | self._local

    def max_age(self, jwks_ttl: float) -> int:
        """Seconds Hasura may keep an answer of `/jwks`."""
        return int(max(10, min(jwks_ttl // 2, 300, self.interval)))

    async def add(self, name: str) -> None:
        """Publish a realm whose provisioning just finished: pinned, keys loaded (else PublishError)."""
        realm = self._realms.realm_for_name(name)
        if realm is None:
            raise PublishError(f"jwks: {name} is not a trusted realm name")
        if not await self._cache.load(realm):
            raise PublishError(f"jwks: no usable signing key for {name} yet ({self._cache.last_error(name)})")
        self._local.add(name)

    async def sync(self) -> int:
        """Re-read the provisioned realms from the database; the number of realms added or dropped."""
        if self._store is None:
            return 0
        query = select(RealmProvisioningJob.realm).where(RealmProvisioningJob.status == "done")
        async with self._store.sessions() as session:
            done = {str(name) for name in (await session.scalars(query)).all()}
        self._local -= done
        gone = self._provisioned - done
        for name in gone:
            self._provisioned.discard(name)
            if name not in self._configured and name not in self._local:
                self._cache.unpin(name)
        known = self._provisioned | self._local
        new = [r for r in (self._realms.realm_for_name(n) for n in sorted(done - known)) if r is not None]
        self._cache.pin(new)
        self._provisioned |= {r.name for r in new} | (done & known)
        if new:
            await self._cache.refresh_due()
        return len(gone) + len(new)

    async def run(self) -> None:
        """Forever: sync, then wait `interval` seconds (a database error is logged, never fatal)."""
        if self._store is not None:
            await self._store.ready.wait()
        while True:
            try:
                await self.sync()
            except Exception as exc:  # the database is down: keep what is published
                self._log.warning("jwks.publish_sync_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(self.interval)


__all__ = ["PublishError", "PublishedRealms"]
