"""The multi-realm JWKS cache, driven through httpx.MockTransport with a hand-moved clock.

Every cache rule is asserted by counting fetches, never by sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from webhook.auth.jwks import JwksCache
from webhook.auth.jwksfetch import CachePolicy, JwksFetcher
from webhook.auth.tokencache import VerifiedTokenCache
from webhook.core.realms import Realm, RealmPolicy, parse_realm_name
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import Identity
from webhook.observability.metrics import Metrics

pytestmark = pytest.mark.anyio

TENANT_A = "tenant-11111111-1111-4111-8111-111111111111"
TENANT_B = "tenant-22222222-2222-4222-8222-222222222222"
BASE = "http://keycloak.internal:8080"


def realm(name: str) -> Realm:
    parsed = parse_realm_name(name)
    assert parsed is not None
    return parsed


@pytest.fixture(scope="module")
def rsa_keys() -> list[RSAKey]:
    return [RSAKey.generate_key(2048) for _ in range(3)]


def jwk(key: RSAKey, kid: str, use: str = "sig") -> dict[str, Any]:
    data = dict(key.as_dict(private=False))
    data.update(kid=kid, use=use, alg="RS256" if use == "sig" else "RSA-OAEP")
    return data


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeKeycloak:
    """A MockTransport handler: per-realm JWKS documents, status overrides and fetch counts."""

    keys: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    body: dict[str, bytes] = field(default_factory=dict)
    fetches: Counter[str] = field(default_factory=Counter)
    urls: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        name = request.url.path.split("/")[2]
        self.fetches[name] += 1
        if self.gate is not None:
            await self.gate.wait()
        if name in self.status:
            return httpx.Response(self.status[name])
        if name in self.body:
            return httpx.Response(200, content=self.body[name])
        if name not in self.keys:
            return httpx.Response(404, json={"error": "Realm does not exist"})
        return httpx.Response(200, json={"keys": self.keys[name]})


@pytest.fixture
def keycloak(rsa_keys: list[RSAKey]) -> FakeKeycloak:
    kc = FakeKeycloak()
    kc.keys[TENANT_A] = [jwk(rsa_keys[0], "a1"), jwk(rsa_keys[1], "enc", use="enc")]
    kc.keys[TENANT_B] = [jwk(rsa_keys[2], "b1")]
    return kc


CacheFactory = Callable[..., JwksCache]


@pytest.fixture
async def make_cache(keycloak: FakeKeycloak) -> AsyncIterator[CacheFactory]:
    clients: list[httpx.AsyncClient] = []
    caches: list[JwksCache] = []

    def factory(clock: Clock | None = None, **policy: Any) -> JwksCache:
        client = httpx.AsyncClient(transport=httpx.MockTransport(keycloak))
        clients.append(client)
        rules = CachePolicy(**policy)
        realms = RealmPolicy(("https://public.example",), frozenset(), BASE)
        fetcher = JwksFetcher(client, realms, rules, frozenset({"RS256"}))
        cache = JwksCache(fetcher, policy=rules, clock=clock or Clock(), metrics=Metrics())
        caches.append(cache)
        return cache

    yield factory
    for cache in caches:
        await cache.close()
    for client in clients:
        await client.aclose()


async def test_first_use_fetches_once_then_serves_from_cache(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """A realm's keys are fetched on first use and then served from memory."""
    cache = make_cache()
    for _ in range(5):
        key = await cache.key_for(realm(TENANT_A), "a1")
        assert key.kid == "a1"
    assert keycloak.fetches[TENANT_A] == 1


async def test_fetch_url_is_built_from_configured_base_and_realm_name(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """Keys are fetched from KEYCLOAK_URL + /realms/<name>/protocol/openid-connect/certs only."""
    await make_cache().key_for(realm(TENANT_A), "a1")
    assert keycloak.urls == [f"{BASE}/realms/{TENANT_A}/protocol/openid-connect/certs"]


async def test_enc_key_is_never_a_signing_key(make_cache: CacheFactory) -> None:
    """The realm's `use: enc` key is not returned for its kid."""
    with pytest.raises(Rejected) as info:
        await make_cache().key_for(realm(TENANT_A), "enc")
    assert info.value.reason is Reason.UNKNOWN_KID


async def test_realms_are_isolated(make_cache: CacheFactory) -> None:
    """A kid of realm B is unknown in realm A: keys are bound to their realm."""
    cache = make_cache()
    await cache.key_for(realm(TENANT_B), "b1")
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "b1")
    assert info.value.reason is Reason.UNKNOWN_KID


async def test_ttl_expiry_refreshes_in_background_and_serves_current_keys(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """Past the TTL the cached keys still answer while one background refresh runs."""
    clock = Clock()
    cache = make_cache(clock, ttl=60)
    await cache.key_for(realm(TENANT_A), "a1")
    clock.now += 61
    assert cache.cached_key(realm(TENANT_A), "a1") is not None
    assert cache.cached_key(realm(TENANT_A), "a1") is not None  # no second refresh started
    await cache.refresh_due()  # joins nothing new: the refresh is already in flight
    await asyncio.gather(*list(cache._tasks))
    assert keycloak.fetches[TENANT_A] == 2
    assert cache.state(TENANT_A) == "fresh"


async def test_refresh_due_refetches_expired_realms_only(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """The background refresher fetches realms past their TTL and leaves fresh ones alone."""
    clock = Clock()
    cache = make_cache(clock, ttl=60)
    await cache.key_for(realm(TENANT_A), "a1")
    clock.now += 30
    await cache.key_for(realm(TENANT_B), "b1")
    clock.now += 31  # A is 61 s old, B 31 s
    assert await cache.refresh_due() == 1
    assert keycloak.fetches == Counter({TENANT_A: 2, TENANT_B: 1})


async def test_stale_keys_are_served_while_keycloak_fails(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """Stale-if-error: keys past TTL keep verifying while refreshes fail, up to max_stale."""
    clock = Clock()
    cache = make_cache(clock, ttl=60, max_stale=100, retry=5)
    await cache.key_for(realm(TENANT_A), "a1")
    keycloak.status[TENANT_A] = 503
    clock.now += 61
    assert await cache.refresh_due() == 1
    assert cache.state(TENANT_A) == "stale"
    assert (await cache.key_for(realm(TENANT_A), "a1")).kid == "a1"
    clock.now += 100  # now 161 s old: beyond ttl + max_stale
    assert cache.cached_key(realm(TENANT_A), "a1") is None
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "a1")
    assert info.value.reason is Reason.JWKS_UNAVAILABLE


async def test_recovers_by_itself_when_keycloak_is_back(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """A realm that failed to load is fetched again after the retry interval and then works."""
    clock = Clock()
    cache = make_cache(clock, retry=2)
    keycloak.status[TENANT_A] = 503
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "a1")
    assert info.value.reason is Reason.JWKS_UNAVAILABLE
    with pytest.raises(Rejected):  # within the retry interval: no new fetch
        await cache.key_for(realm(TENANT_A), "a1")
    assert keycloak.fetches[TENANT_A] == 1
    del keycloak.status[TENANT_A]
    clock.now += 2
    assert (await cache.key_for(realm(TENANT_A), "a1")).kid == "a1"
    assert keycloak.fetches[TENANT_A] == 2


async def test_unknown_kid_refetches_at_most_once_per_interval(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """An unknown kid triggers one refetch, then none until min_refetch has passed."""
    clock = Clock()
    cache = make_cache(clock, min_refetch=10)
    await cache.key_for(realm(TENANT_A), "a1")
    clock.now += 10
    for _ in range(50):
        with pytest.raises(Rejected) as info:
            await cache.key_for(realm(TENANT_A), "rotated")
        assert info.value.reason is Reason.UNKNOWN_KID
    assert keycloak.fetches[TENANT_A] == 2
    clock.now += 10
    with pytest.raises(Rejected):
        await cache.key_for(realm(TENANT_A), "rotated")
    assert keycloak.fetches[TENANT_A] == 3


async def test_rotation_new_kid_accepted_after_one_refetch(
    make_cache: CacheFactory, keycloak: FakeKeycloak, rsa_keys: list[RSAKey]
) -> None:
    """A key published after our fetch is found by the unknown-kid refetch."""
    clock = Clock()
    cache = make_cache(clock, min_refetch=10)
    await cache.key_for(realm(TENANT_A), "a1")
    generation = cache.generation(TENANT_A)
    keycloak.keys[TENANT_A] = [jwk(rsa_keys[0], "a1"), jwk(rsa_keys[2], "a2")]
    clock.now += 10
    assert (await cache.key_for(realm(TENANT_A), "a2")).kid == "a2"
    assert cache.generation(TENANT_A) > generation


async def test_single_flight_under_100_concurrent_unknown_kid_requests(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """100 concurrent requests for an unknown kid share one fetch."""
    clock = Clock()
    cache = make_cache(clock, min_refetch=10)
    await cache.key_for(realm(TENANT_A), "a1")
    clock.now += 10
    keycloak.gate = asyncio.Event()
    tasks = [asyncio.create_task(cache.key_for(realm(TENANT_A), f"x{i}")) for i in range(100)]
    await asyncio.sleep(0)  # let every task reach the shared fetch (one loop turn, not a wait)
    keycloak.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Rejected) and r.reason is Reason.UNKNOWN_KID for r in results)
    assert keycloak.fetches[TENANT_A] == 2


async def test_single_flight_for_a_new_realm(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """Concurrent first uses of a realm make one fetch and all get the key."""
    cache = make_cache()
    keycloak.gate = asyncio.Event()
    tasks = [asyncio.create_task(cache.key_for(realm(TENANT_A), "a1")) for _ in range(100)]
    await asyncio.sleep(0)
    keycloak.gate.set()
    keys = await asyncio.gather(*tasks)
    assert {k.kid for k in keys} == {"a1"}
    assert keycloak.fetches[TENANT_A] == 1


async def test_negative_cache_for_realms_that_do_not_exist(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """A realm Keycloak does not know is remembered as missing for negative_ttl."""
    clock = Clock()
    cache = make_cache(clock, negative_ttl=60)
    ghost = realm("tenant-33333333-3333-4333-8333-333333333333")
    for _ in range(20):
        with pytest.raises(Rejected) as info:
            await cache.key_for(ghost, "k")
        assert info.value.reason is Reason.UNKNOWN_REALM
    assert keycloak.fetches[ghost.name] == 1
    clock.now += 60
    with pytest.raises(Rejected):
        await cache.key_for(ghost, "k")
    assert keycloak.fetches[ghost.name] == 2


async def test_lru_cap_evicts_least_recently_used_but_not_pinned(
    make_cache: CacheFactory, keycloak: FakeKeycloak, rsa_keys: list[RSAKey]
) -> None:
    """At most max_realms entries are held; the oldest unpinned one goes first."""
    names = [f"tenant-{i:08d}-0000-4000-8000-000000000000" for i in range(6)]
    for name in names:
        keycloak.keys[name] = [jwk(rsa_keys[0], "k")]
    cache = make_cache(max_realms=3)
    cache.pin([realm(names[0])])
    for name in names[1:]:
        await cache.key_for(realm(name), "k")
    assert len(cache) == 3
    assert cache.state(names[0]) is not None  # pinned survives
    assert [cache.state(n) for n in names[1:4]] == [None, None, None]
    await cache.key_for(realm(names[1]), "k")  # evicted realm is fetched again
    assert keycloak.fetches[names[1]] == 2


async def test_concurrent_fetch_cap_refuses_instead_of_queueing(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """A request needing a fetch beyond max_concurrent_fetches gets jwks_unavailable at once."""
    cache = make_cache(max_concurrent_fetches=2)
    keycloak.gate = asyncio.Event()
    names = [f"tenant-{i:08d}-0000-4000-8000-000000000000" for i in range(3)]
    first = [asyncio.create_task(cache.key_for(realm(n), "k")) for n in names[:2]]
    await asyncio.sleep(0)
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(names[2]), "k")
    assert info.value.reason is Reason.JWKS_UNAVAILABLE
    keycloak.gate.set()
    await asyncio.gather(*first, return_exceptions=True)
    assert keycloak.fetches[names[2]] == 0


@pytest.mark.parametrize(
    ("body", "status", "outcome"),
    [
        (b"<html>login</html>", 200, "invalid"),
        (b"\x00\xff garbage", 200, "invalid"),
        (b'{"keys": "nope"}', 200, "invalid"),
        (b"x" * 5000, 200, "too_large"),
        (b"", 302, "redirect"),
        (b"", 500, "http_error"),
    ],
)
async def test_bad_jwks_answers_are_failures_not_keys(
    make_cache: CacheFactory, keycloak: FakeKeycloak, body: bytes, status: int, outcome: str
) -> None:
    """Garbage, HTML, oversize bodies, redirects and 5xx never become keys; the outcome is counted."""
    if status != 200:
        keycloak.status[TENANT_A] = status
    else:
        keycloak.body[TENANT_A] = body
    cache = make_cache(max_bytes=4096)
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "a1")
    assert info.value.reason is Reason.JWKS_UNAVAILABLE
    assert cache.last_error(TENANT_A)
    metrics = cache._metrics
    assert metrics is not None
    assert metrics.fetch[outcome]._value.get() == 1


async def test_realm_removed_from_keycloak_stops_verifying(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """When Keycloak answers 404 for a realm we held, its keys are dropped (not served stale)."""
    clock = Clock()
    cache = make_cache(clock, ttl=60)
    await cache.key_for(realm(TENANT_A), "a1")
    del keycloak.keys[TENANT_A]
    clock.now += 61
    await cache.refresh_due()
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "a1")
    assert info.value.reason is Reason.UNKNOWN_REALM


async def test_timeout_is_a_failure(make_cache: CacheFactory, keycloak: FakeKeycloak) -> None:
    """A Keycloak slower than the fetch timeout is a jwks_unavailable, not a hang."""
    keycloak.gate = asyncio.Event()  # never set: the fetch can only end by timing out
    cache = make_cache(fetch_timeout=0.05)
    with pytest.raises(Rejected) as info:
        await cache.key_for(realm(TENANT_A), "a1")
    assert info.value.reason is Reason.JWKS_UNAVAILABLE
    assert "timed out" in cache.last_error(TENANT_A)


def test_policy_defaults_match_documented_settings() -> None:
    """CachePolicy defaults equal the documented defaults of the JWKS_* variables."""
    from webhook.app import cache_policy
    from webhook.config import Settings

    assert CachePolicy() == cache_policy(Settings.from_environ({"KEYCLOAK_URL": BASE}))


async def test_generations_never_repeat_after_eviction_and_refetch(
    make_cache: CacheFactory, keycloak: FakeKeycloak, rsa_keys: list[RSAKey]
) -> None:
    """A realm evicted and fetched again (its old key removed meanwhile) gets a generation it never had:
    a verification cached under the old keys is not served again (it was, when generations restarted)."""
    clock = Clock()
    cache = make_cache(clock, max_realms=1)
    tokens = VerifiedTokenCache(
        max_entries=10, max_rejections=10, ttl=600, generation_of=cache.generation, wall_clock=clock
    )
    await cache.key_for(realm(TENANT_A), "a1")
    seen = {cache.generation(TENANT_A)}
    identity = Identity(realm(TENANT_A), "user", TENANT_A[7:], None, "r", frozenset({"r"}), clock.now + 300)
    tokens.put_identity(b"digest-of-a-token-signed-by-a1", identity)
    await cache.key_for(realm(TENANT_B), "b1")  # evicts TENANT_A
    assert cache.generation(TENANT_A) == -1
    keycloak.keys[TENANT_A] = [jwk(rsa_keys[1], "a2")]  # a1 removed in Keycloak
    await cache.key_for(realm(TENANT_A), "a2")
    assert cache.generation(TENANT_A) not in seen
    assert tokens.get(b"digest-of-a-token-signed-by-a1") is None


async def test_pinned_health_tracks_state_failures_age_and_outcomes(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """Prefetched realms report their state, consecutive failures, key age, time left and fetch
    outcomes; unpinned realms never appear (their names may come from tokens)."""
    clock = Clock()
    cache = make_cache(clock, ttl=600, max_stale=3600, retry=2)
    cache.pin([realm(TENANT_A)])
    await cache.key_for(realm(TENANT_B), "b1")  # held but not pinned
    await cache.refresh_due()
    [healthy] = cache.pinned_health()
    assert (healthy.realm, healthy.state, healthy.failures) == (TENANT_A, "fresh", 0)
    assert healthy.key_age == 0 and healthy.usable_for == 4200
    assert healthy.fetches == {"ok": 1}

    keycloak.status[TENANT_A] = 503
    clock.now += 700  # past the TTL: the refresher fetches, and fails
    await cache.refresh_due()
    clock.now += 3
    await cache.refresh_due()
    [stale] = cache.pinned_health()
    assert (stale.state, stale.failures) == ("stale", 2)
    assert stale.key_age == 703 and stale.usable_for == 4200 - 703
    assert stale.fetches == {"ok": 1, "http_error": 2}

    del keycloak.status[TENANT_A]
    clock.now += 3
    await cache.refresh_due()
    [recovered] = cache.pinned_health()
    assert (recovered.state, recovered.failures, recovered.key_age) == ("fresh", 0, 0)


async def test_pinned_realm_never_loaded_reports_no_age_and_nothing_usable(
    make_cache: CacheFactory, keycloak: FakeKeycloak
) -> None:
    """A prefetched realm Keycloak keeps failing has no key age, 0 s usable and counts its failures."""
    keycloak.status[TENANT_A] = 500
    cache = make_cache(retry=0)
    cache.pin([realm(TENANT_A)])
    await cache.refresh_due()
    await cache.refresh_due()
    [health] = cache.pinned_health()
    assert (health.state, health.failures, health.key_age, health.usable_for) == ("failed", 2, None, 0)
