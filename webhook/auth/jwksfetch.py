"""Fetching one realm's JWKS from our Keycloak: the IO edge of the JWKS cache (`webhook.auth.jwks`).

Rules of this module:
- The only URL ever fetched is `RealmPolicy.jwks_url(realm)`: configured base + validated name.
  Nothing from a token (`iss`, `jku`, `x5u`...) reaches the HTTP client.
- One fetch is bounded: total timeout, body size cap on the raw stream, identity encoding only
  (a compressed body is refused before it can inflate), no redirects. It never raises: every
  failure is a `Fetched` with its outcome (the metrics' closed set `FETCH_OUTCOMES`).
- `CachePolicy` holds the timing and size rules the cache and the fetcher share.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import httpx

from webhook.core.keys import JwksError, RealmKeys, parse_jwks
from webhook.core.realms import Realm, RealmPolicy

_CHUNK: Final = 65536


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Timing and size rules of the cache (all seconds)."""

    ttl: float = 600
    min_refetch: float = 10
    retry: float = 2
    max_stale: float = 3600
    negative_ttl: float = 60
    max_realms: int = 1000
    max_concurrent_fetches: int = 8
    fetch_timeout: float = 3
    max_bytes: int = 262144
    new_realm_fetch_rate: float = 100


@dataclass(frozen=True, slots=True)
class Fetched:
    """The result of one fetch: keys, or `missing` (404), or a failure with its outcome."""

    outcome: str
    keys: RealmKeys | None = None
    error: str = ""

    @property
    def missing(self) -> bool:
        return self.outcome == "not_found"


class JwksFetcher:
    """Fetches one realm's JWKS over an injected `httpx.AsyncClient`. The IO edge."""

    def __init__(
        self, client: httpx.AsyncClient, realms: RealmPolicy, policy: CachePolicy, algorithms: frozenset[str]
    ) -> None:
        self._client = client
        self._realms = realms
        self._policy = policy
        self._algorithms = algorithms

    async def fetch(self, realm: Realm) -> Fetched:
        """GET the realm's certs endpoint; never raises."""
        url = self._realms.jwks_url(realm)
        try:
            async with asyncio.timeout(self._policy.fetch_timeout):
                return await self._get(url)
        except TimeoutError:
            return Fetched("timeout", error="timed out")
        except httpx.TimeoutException:
            return Fetched("timeout", error="timed out")
        except httpx.HTTPError as exc:
            return Fetched("network_error", error=type(exc).__name__)
        except OSError as exc:
            return Fetched("network_error", error=type(exc).__name__)

    async def _get(self, url: str) -> Fetched:
        request = self._client.build_request(
            "GET", url, headers={"Accept": "application/json", "Accept-Encoding": "identity"}
        )
        response = await self._client.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_redirect:
                return Fetched("redirect", error=f"HTTP {response.status_code} redirect not followed")
            if response.status_code == 404:
                return Fetched("not_found", error="realm does not exist")
            if response.status_code != 200:
                return Fetched("http_error", error=f"HTTP {response.status_code}")
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                # We asked for identity; decoding would let a small compressed body inflate
                # ~1000x in memory before the size cap below could see it.
                return Fetched("invalid", error=f"Content-Encoding {encoding[:32]!r} refused")
            body = bytearray()
            async for chunk in response.aiter_bytes(_CHUNK):
                body += chunk
                if len(body) > self._policy.max_bytes:
                    return Fetched("too_large", error=f"JWKS larger than {self._policy.max_bytes} bytes")
        finally:
            await response.aclose()
        try:
            keys = parse_jwks(bytes(body), self._algorithms)
        except JwksError as exc:
            return Fetched("invalid", error=str(exc))
        return Fetched("ok", keys=keys)
