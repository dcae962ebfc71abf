"""Session revocations of one process: taking logout tokens, the hot-path check, and staying in sync.

Rules of this module:
- `revoked(identity)` is what the verifier calls after every verification and every verified-token
  cache hit. It does nothing but read memory: the `RevocationSet` lookups, then the fail-closed cutoff.
- A taken logout token is stored first (the unique (realm, jti) refuses a replay on every replica),
  then held in memory. The bounded in-memory replay cache answers a replay without the database.
  If the database cannot be written, the revocation is still held here and the caller answers 503
  (Keycloak logs the failure); it is not retried.
- Staying in sync (`run()`, one task): on PostgreSQL a dedicated asyncpg connection LISTENs on
  `revocationstore.CHANNEL`, then reads every active row (anything committed before the LISTEN),
  then applies each notification as it arrives; a 1-per-`heartbeat` `SELECT 1` on that connection
  proves the link. Any failure closes it and reconnects with capped backoff, and every reconnect
  reads every active row again. On SQLite (one process) it polls rows by id instead.
- Uncertainty: when the link has not been proven for `max_lag` seconds, or before the first full
  read, the process is `uncertain` (`/readyz`, `webhook_revocation_uncertain`). With `fail_closed`,
  tokens issued before the last proven moment are then refused (`session_revoked`); before the
  first full read that is every token. It ends with the next full read.
- Times: revocation times are wall-clock seconds (they travel between processes); the link's
  timings use the monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from sqlalchemy.engine import make_url

from webhook.core.logouttoken import LogoutClaims
from webhook.core.realms import Realm
from webhook.core.session import Identity
from webhook.db.datastore import DataStore
from webhook.revocation.active import NO_CUTOFF, Revocation, RevocationSet
from webhook.revocation.store import CHANNEL, active, from_payload, insert, prune, since, to_revocation

RECEIVED_RESULTS: Final = ("taken", "rejected", "replayed", "unavailable")
ReceivedResult = Literal["taken", "rejected", "replayed", "unavailable"]
REPLAY_CACHE_SIZE: Final = 100_000
RECONNECT_MAX_SECONDS: Final = 1.0
DB_PRUNE_EVERY_SECONDS: Final = 60.0
EVERYTHING: Final = float("inf")


class RevocationUnavailable(Exception):
    """The revocation could not be stored: held by this process only."""


@dataclass(frozen=True, slots=True)
class RevocationPolicy:
    """REVOCATION_* settings and the clock leeway."""

    max_token_lifetime: float = 3600.0
    leeway: float = 30.0
    max_entries: int = 1_000_000
    max_lag: float = 5.0
    fail_closed: bool = True

    @property
    def heartbeat(self) -> float:
        """How often the link is proven (and SQLite polled): a few times per `max_lag`, at most 1 s."""
        return min(1.0, self.max_lag / 4)


@dataclass(slots=True)
class RevocationStats:
    """Plain counters read by the metrics collector at scrape time."""

    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECEIVED_RESULTS, 0))
    applied: int = 0
    lag_observer: Callable[[float], None] | None = None


class RevocationService:
    """See the module rules."""

    def __init__(
        self,
        store: DataStore,
        *,
        policy: RevocationPolicy,
        database_url: str | None = None,
        schema: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        log: Any = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.set = RevocationSet(max_entries=policy.max_entries)
        self.stats = RevocationStats()
        self._dsn = _asyncpg_dsn(database_url) if store.dialect == "postgresql" and database_url else None
        self._schema = schema
        self._now = clock
        self._wall = wall_clock
        self._log = log
        self._replays: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._closed_before = EVERYTHING if policy.fail_closed else NO_CUTOFF  # cutoff on iat (module rules)
        self._proven_at = clock()  # monotonic time the link was last proven
        self._proven_wall = wall_clock()
        self._started = False
        self.link: Literal["connecting", "up", "down"] = "connecting"
        self.last_error: str | None = None
        self._last_id = 0
        self._changed = asyncio.Event()

    # ---- the hot path

    def revoked(self, identity: Identity) -> bool:
        """Whether this verified identity's token must be refused (`session_revoked`)."""
        revocations = self.set
        if revocations.by_sid or revocations.by_sub:  # inlined RevocationSet.covers: this runs per request
            realm, sid, sub = identity.realm.name, identity.sid, identity.sub
            if sid is not None and (realm, sid) in revocations.by_sid:
                revocations.hits += 1
                return True
            entry = revocations.by_sub.get((realm, sub)) if sub is not None else None
            if entry is not None and (identity.iat is None or identity.iat <= entry[0]):
                revocations.hits += 1
                return True
        cutoff = self._closed_before
        if cutoff == NO_CUTOFF:
            return False
        iat = identity.iat
        if iat is None or iat < cutoff:
            revocations.hits += 1
            return True
        return False

    # ---- taking revocations

    async def take_logout(self, realm: Realm, claims: LogoutClaims) -> ReceivedResult:
        """Store and hold a verified logout token's revocation; `replayed` if its jti was taken."""
        key = (realm.name, claims.jti)
        now = self._wall()
        if key in self._replays:
            return "replayed"
        revocation = Revocation(
            realm=realm.name,
            sid=claims.sid,
            sub=None if claims.sid is not None else claims.sub,
            before=claims.iat,
            expires_at=now + self.policy.max_token_lifetime + self.policy.leeway,
            created_at=now,
        )
        try:
            async with self.store.transaction() as session:
                fresh = await insert(session, revocation, source="backchannel", jti=claims.jti)
        except Exception as exc:
            self._hold(revocation)
            self.last_error = f"{type(exc).__name__}"
            raise RevocationUnavailable(self.last_error) from None
        self._remember_jti(key, claims.exp + self.policy.leeway)
        if not fresh:
            return "replayed"
        self._hold(revocation)
        return "taken"

    def _remember_jti(self, key: tuple[str, str], until: float) -> None:
        replays = self._replays
        replays[key] = until
        now = self._wall()
        while replays and (len(replays) > REPLAY_CACHE_SIZE or next(iter(replays.values())) <= now):
            replays.popitem(last=False)

    def hold(self, revocation: Revocation) -> bool:
        """Hold a revocation this process has just stored itself (operators, API keys): refused at once."""
        return self._hold(revocation)

    def _hold(self, revocation: Revocation) -> bool:
        changed = self.set.apply(revocation)
        if changed:
            self.stats.applied += 1
            self._changed.set()
        return changed

    async def wait_until(self, condition: Callable[[RevocationSet], bool]) -> None:
        """Return once `condition(self.set)` holds, re-checked whenever a revocation is applied (tests and
        benchmarks bound it with a timeout)."""
        while not condition(self.set):
            self._changed.clear()
            await self._changed.wait()

    # ---- status

    def uncertain(self) -> bool:
        """Whether this process cannot be sure it holds every revocation (see module rules)."""
        return self._now() - self._proven_at > self.policy.max_lag or self.set.uncertain(self._wall())

    @property
    def loaded(self) -> bool:
        """Whether the first full read has completed (until then `/readyz` is not ready)."""
        return self._started

    def status(self) -> dict[str, object]:
        """For `/readyz` (brings the fail-closed cutoff up to date first, as the ticker does)."""
        self._update_cutoff()
        state = "loading" if not self._started else ("uncertain" if self.uncertain() else "ok")
        cutoff = self._closed_before
        return {
            "state": state,
            "link": self.link,
            "active": len(self.set),
            "fail_closed_before": None if cutoff in (NO_CUTOFF, EVERYTHING) else cutoff,
        }

    def _update_cutoff(self) -> None:
        if not self.policy.fail_closed:
            self._closed_before = NO_CUTOFF
        elif not self._started:
            self._closed_before = EVERYTHING
        elif self.uncertain():
            self._closed_before = self._proven_wall
        else:
            self._closed_before = NO_CUTOFF

    # ---- staying in sync

    async def run(self) -> None:
        """Keep this process's revocations complete until cancelled (see module rules)."""
        ticker = asyncio.get_running_loop().create_task(self._ticker())
        try:
            await self._link()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _link(self) -> None:
        backoff = 0.05
        while True:
            try:
                if self._dsn is not None:
                    await self._listen()
                else:
                    await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self._log is not None and self.link != "down":  # once per outage, not per attempt
                    self._log.warning("revocations.link_down", error=self.last_error)
                self.link = "down"
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)

    async def _ticker(self) -> None:
        pruned_at = self._now()
        pruning: asyncio.Task[None] | None = None
        try:
            while True:
                self.set.prune(self._wall())
                self._update_cutoff()
                if self._now() - pruned_at > DB_PRUNE_EVERY_SECONDS and (pruning is None or pruning.done()):
                    pruned_at = self._now()  # its own task: a hanging database never stalls the cutoff
                    pruning = asyncio.get_running_loop().create_task(self._prune_db())
                await asyncio.sleep(self.policy.heartbeat)
        finally:
            if pruning is not None:
                pruning.cancel()

    def _proven(self) -> None:
        self._proven_at = self._now()
        self._proven_wall = self._wall()

    async def _full_read(self) -> None:
        async with self.store.sessions() as session:
            rows = await active(session, self._wall())
        for row in rows:
            self._last_id = max(self._last_id, row.id)
            self._hold(to_revocation(row))
        self._started = True
        self._proven()
        if self.link == "down" and self._log is not None:
            self._log.info("revocations.link_up", held=len(self.set))
        self.link = "up"
        self._update_cutoff()

    async def _listen(self) -> None:
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - PostgreSQL only

        settings = {"search_path": self._schema} if self._schema else None
        connection = await asyncpg.connect(self._dsn, timeout=self.policy.max_lag, server_settings=settings)
        try:
            await connection.add_listener(CHANNEL, self._notified)
            await self._full_read()
            heartbeat = self.policy.heartbeat
            while True:
                await asyncio.sleep(heartbeat)
                await connection.fetchval("SELECT 1", timeout=max(heartbeat, self.policy.max_lag / 2))
                self._proven()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=1.0)

    def _notified(self, _connection: Any, _pid: int, _channel: str, data: str) -> None:
        try:
            revocation = from_payload(data)
        except ValueError:
            return
        if self._hold(revocation) and self.stats.lag_observer is not None:
            self.stats.lag_observer(max(0.0, self._wall() - revocation.created_at))

    async def _poll(self) -> None:
        await self._full_read()
        while True:
            await asyncio.sleep(self.policy.heartbeat)
            async with self.store.sessions() as session:
                rows = await since(session, self._last_id)
            for row in rows:
                self._last_id = max(self._last_id, row.id)
                if self._hold(to_revocation(row)) and self.stats.lag_observer is not None:
                    self.stats.lag_observer(max(0.0, self._wall() - row.created_at.timestamp()))
            self._proven()

    async def _prune_db(self) -> None:
        with contextlib.suppress(Exception):
            async with self.store.transaction() as session:
                await prune(session, self._wall())


def _asyncpg_dsn(url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy `postgresql+asyncpg://` URL (query options dropped)."""
    parsed = make_url(url).set(drivername="postgresql", query={})
    return parsed.render_as_string(hide_password=False)


__all__ = [
    "RECEIVED_RESULTS",
    "ReceivedResult",
    "RevocationPolicy",
    "RevocationService",
    "RevocationStats",
    "RevocationUnavailable",
]
