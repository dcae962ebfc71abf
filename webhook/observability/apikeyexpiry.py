"""The API keys in use and when they expire, for the `ApiKeyNearExpiry` alert. Pure (clock injected).

Rules of this module:
- The hook learns a key's expiry from its verified tokens (claim `api_key.exp`, `webhook.core.apikeyclaim`):
  the verifier reports each API-key token whose *signature verified* (expired keys included, so a key
  still used past its expiry stays visible), never one it rejected earlier. Keys without an expiry
  are not tracked (nothing to warn about).
- Label values are bounded: only tenant realms (`tenant-<uuid>`, where API keys live) and key names
  the template allows (`name_allowed`, injected by the composition root: the template's rule
  `webhook.provisioning.apikeyclient.name_problem`, 3-63 of `a-z0-9-`, no reserved client); at most
  `MAX_TRACKED_KEYS` keys at once. When full, a new key takes the place of the tracked key expiring
  last only if it expires sooner (so a flood of long-lived keys cannot push out one about to expire);
  otherwise it is counted as untracked.
- A key no token has shown for `FORGET_AFTER_SECONDS` is forgotten (a revoked or abandoned key stops
  being reported; a daily job's key is seen often enough to stay). The tracker is per process and
  starts empty: a key reappears with its first token after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from webhook.core.apikeyclaim import ApiKeyClaim
from webhook.core.realms import Realm

MAX_TRACKED_KEYS: Final = 1000
FORGET_AFTER_SECONDS: Final = 2 * 86400


@dataclass(frozen=True, slots=True)
class TrackedKey:
    """One API key in use: its tenant realm, its name, its expiry (epoch seconds)."""

    realm: str
    name: str
    expires_at: float


class ApiKeyExpiries:
    """The expiries of the API keys whose tokens this process verified recently (bounded)."""

    __slots__ = ("_cap", "_forget_after", "_keys", "_name_allowed", "_now", "untracked")

    def __init__(
        self,
        wall_clock: Callable[[], float],
        *,
        cap: int = MAX_TRACKED_KEYS,
        forget_after: float = FORGET_AFTER_SECONDS,
        name_allowed: Callable[[str], bool],
    ) -> None:
        self._now = wall_clock
        self._name_allowed = name_allowed
        self._cap = cap
        self._forget_after = forget_after
        self._keys: dict[tuple[str, str], tuple[float, float]] = {}  # (realm, name) -> (expires_at, last seen)
        self.untracked = 0  # keys not tracked because the tracker was full of keys expiring sooner

    def seen(self, realm: Realm, key: ApiKeyClaim | None) -> None:
        """A token of `key` from `realm` verified (its signature did); remember the key's expiry."""
        if key is None or key.expires_at is None:
            return
        if realm.tenant_id is None or realm.event_id is not None or not self._name_allowed(key.name):
            return
        now = self._now()
        entry = (realm.name, key.name)
        keys = self._keys
        if entry not in keys and len(keys) >= self._cap and not self._make_room(key.expires_at, now):
            self.untracked += 1
            return
        keys[entry] = (key.expires_at, now)

    def _make_room(self, expires_at: float, now: float) -> bool:
        """Free one place (forgotten keys first, else the key expiring last if later than `expires_at`)."""
        self._forget(now)
        keys = self._keys
        if len(keys) < self._cap:
            return True
        latest = max(keys, key=lambda entry: keys[entry][0])
        if keys[latest][0] <= expires_at:
            return False
        del keys[latest]
        return True

    def _forget(self, now: float) -> None:
        keys = self._keys
        for entry in [entry for entry, (_, seen) in keys.items() if now - seen > self._forget_after]:
            del keys[entry]

    def tracked(self) -> Iterator[TrackedKey]:
        """The keys still tracked (forgetting those unseen for too long first)."""
        self._forget(self._now())
        for (realm, name), (expires_at, _) in sorted(self._keys.items()):
            yield TrackedKey(realm, name, expires_at)


__all__ = ["FORGET_AFTER_SECONDS", "MAX_TRACKED_KEYS", "ApiKeyExpiries", "TrackedKey"]
