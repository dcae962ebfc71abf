"""The weaknesses this battery found, each pinned by a focused test of its fix.

1. JWKS responses were decoded before the size cap: a gzip body (which we told Keycloak not to
   send) inflated ~1000x per network chunk before JWKS_MAX_BYTES was checked.
2. Tokens naming thousands of made-up (pattern-valid) realms caused one JWKS fetch each, and their
   keyless entries evicted the real realms from the LRU.
3. `Bearer <token>` was parsed with `str.strip()`: Unicode spaces and separators around a token
   (U+3000, U+0085, U+001C...) were dropped and the token accepted.
(4. The unbounded request head of uvicorn's httptools protocol: tests/security/test_oversize.py.)
5. Realm labels of `webhook_rejections_total` went to the first 100 pattern-valid realm names seen,
   made-up ones included; now only to realms whose keys verified a signature (or configured ones).
"""

from __future__ import annotations

import functools
import json
import re
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.security.support import adversarial_stack, bearer
from webhook.auth.jwks import JwksCache
from webhook.auth.jwksfetch import CachePolicy, JwksFetcher
from webhook.core.hookrequest import HookRequest, bearer_token
from webhook.core.realms import Realm, RealmPolicy, parse_realm_name
from webhook.core.reasons import Reason, Rejected
from webhook.observability.metrics import Metrics
from webhook.testing.keycloak import FakeKeycloak, sign_raw
from webhook.testing.server import serve_asgi

pytestmark = pytest.mark.anyio
GHOSTS = [f"tenant-{i:08x}-0000-4000-8000-000000000000" for i in range(200)]


def realm(name: str) -> Realm:
    parsed = parse_realm_name(name)
    assert parsed is not None
    return parsed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------ 1. compressed JWKS


@functools.cache
def bomb() -> bytes:
    """A gzip body of ~64 KB that inflates to 64 MB of JSON (built in 1 MB steps)."""
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [packer.compress(b'{"keys":[],"pad":"')]
    block = b"A" * (1 << 20)
    parts += [packer.compress(block) for _ in range(64)]
    parts.append(packer.compress(b'"}') + packer.flush())
    return b"".join(parts)


async def _gzip_bomb(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": bomb()})


async def test_compressed_jwks_is_refused_without_inflating_it() -> None:
    """A gzip-encoded certs answer is refused as `invalid` with a few hundred KB allocated at most.

    Before the fix the body was inflated while read: the fetch burnt its whole timeout inflating."""
    bomb()  # built before the clock starts
    async with serve_asgi(_gzip_bomb, lifespan="off") as running, httpx.AsyncClient() as client:
        policy = CachePolicy()
        fetcher = JwksFetcher(
            client, RealmPolicy((running.url,), frozenset(), running.url), policy, frozenset({"RS256"})
        )
        tracemalloc.start()
        try:
            fetched = await fetcher.fetch(realm(GHOSTS[0]))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (fetched.outcome, fetched.keys) == ("invalid", None)
    assert "Content-Encoding" in fetched.error
    assert peak < 4 << 20, peak  # before the fix: tens of MB inflated per 64 KB read


# ------------------------------------------------------------------------------ 2. made-up realms


class Missing:
    """MockTransport handler: every realm is unknown except `known`, whose JWKS is served."""

    def __init__(self, known: dict[str, bytes]) -> None:
        self.known = known
        self.fetches: Counter[str] = Counter()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.split("/")[2]
        self.fetches[name] += 1
        if name in self.known:
            return httpx.Response(200, content=self.known[name])
        return httpx.Response(404, json={"error": "Realm does not exist"})


@pytest.fixture
def known_realm() -> tuple[str, str, bytes]:
    keycloak = FakeKeycloak(issuer_base="http://keycloak.test")
    fake = keycloak.add_realm("tenant-11111111-1111-4111-8111-111111111111")
    return fake.name, fake.active_kid, json.dumps(fake.jwks()).encode()


def _cache(handler: Missing, clock: Clock, **policy: Any) -> tuple[JwksCache, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    rules = CachePolicy(**policy)
    fetcher = JwksFetcher(
        client, RealmPolicy(("http://keycloak.test",), frozenset(), "http://keycloak.test"), rules, frozenset({"RS256"})
    )
    return JwksCache(fetcher, policy=rules, clock=clock, metrics=Metrics()), client


async def test_made_up_realms_cost_a_bounded_number_of_fetches(known_realm: tuple[str, str, bytes]) -> None:
    """200 made-up realms at rate 10/s: 10 fetches now, 10 more a second later; the rest refused at once."""
    handler, clock = Missing({}), Clock()
    cache, client = _cache(handler, clock, new_realm_fetch_rate=10)
    reasons: Counter[Reason] = Counter()
    for name in GHOSTS:
        with pytest.raises(Rejected) as info:
            await cache.key_for(realm(name), "k")
        reasons[info.value.reason] += 1
    assert sum(handler.fetches.values()) == 10
    assert reasons == {Reason.UNKNOWN_REALM: 10, Reason.JWKS_UNAVAILABLE: 190}
    clock.now += 1.0 + 2  # a second of budget, and the retry interval of the refused ones
    for name in GHOSTS[100:]:
        with pytest.raises(Rejected):
            await cache.key_for(realm(name), "k")
    assert sum(handler.fetches.values()) == 20
    await client.aclose()


async def test_refresher_never_spends_the_budget_on_refused_realms() -> None:
    """The background refresher retries realms whose fetch failed only through the new-realm budget,
    and never retries realms the budget refused: a flood of made-up names can not spend the budget a
    real, newly created realm needs (before: each round retried them all)."""
    handler, clock = Missing({}), Clock()
    cache, client = _cache(handler, clock, new_realm_fetch_rate=2, negative_ttl=0)
    for name in GHOSTS:
        with pytest.raises(Rejected):
            await cache.key_for(realm(name), "k")
    assert sum(handler.fetches.values()) == 2  # the rest were refused by the budget
    for _ in range(5):
        clock.now += 3.0  # past the retry interval: every realm is "due"
        await cache.refresh_due()
    assert sum(handler.fetches.values()) <= 2 + 5 * 2  # only the 2 fetched (404) ones, within budget
    assert len(handler.fetches) == 2  # no realm the budget refused was ever fetched
    await client.aclose()


async def test_made_up_realms_never_evict_a_realm_with_keys(known_realm: tuple[str, str, bytes]) -> None:
    """With room for 5 realms, a flood of 200 keyless ones leaves the real (unpinned) realm cached."""
    name, kid, jwks = known_realm
    handler, clock = Missing({name: jwks}), Clock()
    cache, client = _cache(handler, clock, max_realms=5, new_realm_fetch_rate=1000)
    assert (await cache.key_for(realm(name), kid)).kid == kid
    for ghost in GHOSTS:
        with pytest.raises(Rejected):
            await cache.key_for(realm(ghost), "k")
    assert len(cache) == 5
    assert cache.state(name) == "fresh"
    assert cache.cached_key(realm(name), kid) is not None
    assert handler.fetches[name] == 1
    await client.aclose()


# ------------------------------------------------------------------------------ 3. bearer parsing


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("  bearer \t abc \t ", "abc"),
        ("Bearer abc\u3000", "abc\u3000"),
        ("Bearer \x85abc", "\x85abc"),
        ("\u2003Bearer abc", None),
    ],
)
def test_bearer_strips_only_http_whitespace(value: str, token: str | None) -> None:
    request = HookRequest(mode="GET", authorization=value)
    if token is None:
        with pytest.raises(Rejected):
            bearer_token(request)
    else:
        assert bearer_token(request) == token


# ------------------------------------------------------------------------------ 5. realm labels


async def test_made_up_realms_take_no_realm_label(tmp_path: Path) -> None:
    """150 unsigned tokens naming made-up realms (refused `unknown_realm` or, past the new-realm fetch
    rate, `jwks_unavailable`) count as realm="other" and take no label; a real realm
    whose keys verified a token still gets its own label afterwards (before: the first 100 made-up
    realms took every label for the life of the process and real realms counted as `other`)."""
    async with adversarial_stack(tmp_path, JWKS_NEW_REALM_FETCH_RATE="5", TOKEN_CACHE_REJECTIONS_SIZE="0") as s:
        for name in GHOSTS[:150]:
            iss = f"{s.keycloak.url}/realms/{name}"
            token = sign_raw({"alg": "RS256", "kid": "k", "typ": "JWT"}, {"iss": iss, "exp": 2**40}, None, alg="none")
            await s.hasura("GET").authenticate(bearer(token + "c2ln"))
        s.clock.advance(1)  # the new-realm fetch bucket (5/s) has a token again for the real realm
        real = s.fresh_realm()
        await s.expect_session(bearer(s.keycloak.mint(real.name)))
        await s.expect_rejected(bearer(s.keycloak.mint(real.name, typ="ID")), "wrong_token_type")
        text = (await s.client.get(f"{s.url}/metrics")).text
    labelled = set(re.findall(r'webhook_rejections_total\{realm="([^"]+)",reason="[a-z_]+"\}', text))
    assert not labelled & set(GHOSTS)
    assert real.name in labelled and "other" in labelled
