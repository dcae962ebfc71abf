"""The verified-token cache: expiry, key-generation invalidation, negative entries, separate LRUs."""

from __future__ import annotations

import pytest

from webhook.auth.tokencache import CACHEABLE_REJECTIONS, CachedRejection, VerifiedTokenCache
from webhook.core.realms import Realm
from webhook.core.reasons import Reason
from webhook.core.session import Identity
from webhook.core.token import TokenFacts

REALM = Realm("tenant-11111111-1111-4111-8111-111111111111", "11111111-1111-4111-8111-111111111111", None)


class World:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.generations = {REALM.name: 1}

    def clock(self) -> float:
        return self.now

    def generation(self, realm: str) -> int:
        return self.generations.get(realm, -1)


def identity(exp: float) -> Identity:
    return Identity(REALM, "user", REALM.tenant_id or "", None, "user", frozenset({"user"}), exp)


def make(world: World, size: int = 10, rejections: int = 10, ttl: float = 300) -> VerifiedTokenCache:
    return VerifiedTokenCache(
        max_entries=size, max_rejections=rejections, ttl=ttl, generation_of=world.generation, wall_clock=world.clock
    )


def rejection(reason: Reason, realm: Realm | None = REALM) -> CachedRejection:
    return CachedRejection(reason, reason.value, TokenFacts(), realm)


def test_identity_served_until_exp() -> None:
    """A verified identity is reused until its exp, not a second longer."""
    world = World()
    cache = make(world)
    cache.put_identity(b"t", identity(world.now + 60))
    world.now += 59.9
    assert cache.get(b"t") is not None
    world.now += 0.1
    assert cache.get(b"t") is None


def test_ttl_caps_long_lived_tokens() -> None:
    """A token valid for a day is reused for at most the cache TTL."""
    world = World()
    cache = make(world, ttl=300)
    cache.put_identity(b"t", identity(world.now + 86400))
    world.now += 300
    assert cache.get(b"t") is None


def test_key_change_drops_entries_of_that_realm_at_once() -> None:
    """When the realm's key generation changes, its cached identities are no longer served."""
    world = World()
    cache = make(world)
    cache.put_identity(b"t", identity(world.now + 60))
    world.generations[REALM.name] = 2
    assert cache.get(b"t") is None
    assert cache.sizes() == (0, 0)


@pytest.mark.parametrize("reason", sorted(Reason))
def test_only_permanent_rejections_are_cached(reason: Reason) -> None:
    """Rejections are remembered only for reasons that cannot change for the same token."""
    world = World()
    cache = make(world)
    cache.put_rejection(b"t", rejection(reason))
    assert (cache.get(b"t") is not None) == (reason in CACHEABLE_REJECTIONS)
    assert Reason.NOT_YET_VALID not in CACHEABLE_REJECTIONS
    assert Reason.UNKNOWN_KID not in CACHEABLE_REJECTIONS


def test_bad_signature_forgotten_when_keys_change() -> None:
    """A cached bad_signature is re-decided after the realm's keys change."""
    world = World()
    cache = make(world)
    cache.put_rejection(b"t", rejection(Reason.BAD_SIGNATURE))
    assert cache.get(b"t") is not None
    world.generations[REALM.name] = 2
    assert cache.get(b"t") is None


def test_flood_of_rejections_cannot_evict_good_entries() -> None:
    """Positive and negative entries have separate caps."""
    world = World()
    cache = make(world, size=2, rejections=3)
    cache.put_identity(b"good", identity(world.now + 60))
    for i in range(100):
        cache.put_rejection(f"bad{i}".encode(), rejection(Reason.MALFORMED_TOKEN, None))
    assert cache.sizes() == (1, 3)
    assert cache.get(b"good") is not None


def test_lru_evicts_least_recently_used() -> None:
    """Beyond the size cap the least recently used identity goes."""
    world = World()
    cache = make(world, size=2)
    for name in (b"a", b"b"):
        cache.put_identity(name, identity(world.now + 60))
    assert cache.get(b"a") is not None
    cache.put_identity(b"c", identity(world.now + 60))
    assert cache.get(b"b") is None
    assert cache.get(b"a") is not None


def test_size_zero_disables() -> None:
    """TOKEN_CACHE_SIZE=0 and TOKEN_CACHE_REJECTIONS_SIZE=0 cache nothing."""
    world = World()
    cache = make(world, size=0, rejections=0)
    cache.put_identity(b"t", identity(world.now + 60))
    cache.put_rejection(b"r", rejection(Reason.MALFORMED_TOKEN))
    assert cache.get(b"t") is None
    assert cache.get(b"r") is None
    assert (cache.hits, cache.misses) == (0, 2)
