"""Load under faults: 64 concurrent Hasura stand-ins over loopback, every answer judged, figures kept.

A request carries the set of outcomes that are correct for it ("200", or "401:<reason>"); anything
else is a wrong decision (a forged token let in, an honest token of a realm with usable keys
refused, an unexpected reason). 5xx are counted apart. Figures of each scenario are printed as one
line and collected into the table `tests/faults/conftest.py` prints at the end of the run (and
writes to $FAULT_FIGURES_FILE when set), which is where SECURITY.md's figures come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import ssl
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.security.forge import header_of, payload_of
from tests.security.support import AdversarialStack, Mode, adversarial_stack, bearer
from webhook.testing.hasura import HasuraStandIn
from webhook.testing.keycloak import Behaviour, FakeRealm, attacker_key, sign_raw

CONCURRENCY = 64
#: Settings every fault scenario runs with: a 1 s fetch timeout (the "slow" fault exceeds it), a
#: 10 s TTL (the clock is moved past it to make keys stale), retries after 1 s, no token cache (every
#: request goes through the JWKS cache).
FAULT_ENV = {
    "JWKS_FETCH_TIMEOUT_SECONDS": "1",
    "JWKS_TTL_SECONDS": "10",
    "JWKS_RETRY_SECONDS": "1",
    "JWKS_MIN_REFETCH_SECONDS": "10",
    "TOKEN_CACHE_SIZE": "0",
    "TOKEN_CACHE_REJECTIONS_SIZE": "0",
}
FIGURES: list[Figures] = []


@dataclass(frozen=True)
class Req:
    headers: dict[str, str]
    expect: frozenset[str]
    mode: Mode = "GET"


@dataclass
class Figures:
    scenario: str
    requests: int = 0
    wrong: int = 0
    errors_5xx: int = 0
    fetches: int = 0
    audit_written: int = 0
    audit_dropped: int = 0
    recovery_s: float | None = None
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong_examples: list[str] = field(default_factory=list)
    notes: str = ""

    def line(self) -> str:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s * 1000:.0f}ms"
        return (
            f"FAULT {self.scenario}: requests={self.requests} wrong={self.wrong} 5xx={self.errors_5xx} "
            f"jwks_fetches={self.fetches} audit_written={self.audit_written} audit_dropped={self.audit_dropped} "
            f"recovery={recovery} p50={self.p50_ms:.1f}ms p99={self.p99_ms:.1f}ms max={self.max_ms:.0f}ms "
            f"in {self.seconds:.1f}s {self.notes}"
        ).rstrip()

    def check(self) -> None:
        """The invariants of every scenario: no wrong decision, no server error."""
        print(self.line())
        FIGURES.append(self)
        assert self.wrong == 0, (self.wrong_examples[:5], dict(self.outcomes))
        assert self.errors_5xx == 0, dict(self.outcomes)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # httpx loads the CA bundle for every client it builds (~40 ms of blocked event loop each):
    # 64 clients built at once stalled the loop, and every request in flight, for 2-3 s.
    return ssl.create_default_context()


class Load:
    """Runs requests with `CONCURRENCY` workers and accumulates into `figures`."""

    def __init__(self, stack: AdversarialStack, figures: Figures) -> None:
        self.stack = stack
        self.figures = figures
        self.latencies: list[float] = []
        self.done = 0
        self.slowest: tuple[float, str, float] = (0.0, "", 0.0)
        self.started = time.perf_counter()

    async def run(
        self, requests: Iterator[Req] | Sequence[Req], *, on_progress: Callable[[int], Any] | None = None
    ) -> None:
        source = iter(requests)
        started = time.perf_counter()

        async def worker() -> None:
            # One client (one keep-alive connection) per worker: a shared pool of 64 connections
            # costs the *client* O(connections) per request in httpcore and swamps the figures.
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(timeout=30, limits=limits, verify=_ssl_context()) as client:
                url = f"{self.stack.url}/hasura/auth"
                hasura = {mode: HasuraStandIn(url, mode=mode, client=client) for mode in ("GET", "POST")}
                for req in source:
                    await self._one(hasura[req.mode], req, on_progress)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        self.figures.seconds += time.perf_counter() - started

    async def _one(self, hasura: HasuraStandIn, req: Req, on_progress: Callable[[int], Any] | None) -> None:
        t0 = time.perf_counter()
        verdict = await hasura.authenticate(req.headers)
        elapsed = time.perf_counter() - t0
        self.latencies.append(elapsed)
        if verdict.hook_status == 401:
            outcome = f"401:{orjson.loads(verdict.hook_body)['reason']}"
        else:
            outcome = str(verdict.hook_status)
        self.slowest = max(self.slowest, (elapsed, outcome, time.perf_counter() - self.started))
        self.figures.outcomes[outcome] += 1
        self.figures.requests += 1
        if verdict.hook_status >= 500 or verdict.hook_status == 0:
            self.figures.errors_5xx += 1
        elif outcome not in req.expect:
            self.figures.wrong += 1
            if len(self.figures.wrong_examples) < 20:
                self.figures.wrong_examples.append(f"{outcome} not in {sorted(req.expect)}")
        self.done += 1
        if on_progress is not None:
            on_progress(self.done)

    def finish(self) -> None:
        if self.latencies:
            ordered = sorted(self.latencies)
            self.figures.p50_ms = statistics.median(ordered) * 1000
            self.figures.p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
            self.figures.max_ms = ordered[-1] * 1000


class Tokens:
    """Pools of distinct tokens (the token cache is off, so repeats cost the same as new ones)."""

    def __init__(self, stack: AdversarialStack, per_pool: int = 16) -> None:
        self.stack = stack
        self.per_pool = per_pool

    def honest(self, realm: FakeRealm, kid: str | None = None) -> list[str]:
        return [self.stack.keycloak.mint(realm.name, kid=kid, lifetime=3600) for _ in range(self.per_pool)]

    def forged(self) -> list[tuple[str, str]]:
        """(token, reason) pairs refused before or at the signature, whatever Keycloak does."""
        kc, tenant = self.stack.keycloak, self.stack.tenant
        out = []
        for _ in range(self.per_pool):
            out.append((kc.mint(tenant.name, signing_key=attacker_key()), "bad_signature"))
            good = kc.mint(tenant.name)
            out.append(
                (
                    sign_raw({**header_of(good), "alg": "none"}, payload_of(good), None, alg="none") + "AAAA",
                    "alg_not_allowed",
                )
            )
            out.append(
                (
                    kc.mint(tenant.name, claims={"iss": f"{self.stack.attacker.url}/realms/{tenant.name}"}),
                    "unknown_issuer",
                )
            )
        return out


def mix(
    honest: Sequence[Sequence[str]],
    forged: Sequence[tuple[str, str]],
    total: int,
    *,
    maybe_unavailable: Sequence[str] = (),
) -> Iterator[Req]:
    """`total` requests cycling through honest pools (must be 200), forged tokens (their reason)
    and tokens of realms that may legitimately lack keys (200 or 401 jwks_unavailable); GET and
    POST alternate."""
    kinds: list[tuple[str, frozenset[str]]] = []
    for pool in honest:
        kinds += [(t, frozenset({"200"})) for t in pool]
    kinds += [(t, frozenset({f"401:{reason}"})) for t, reason in forged]
    kinds += [(t, frozenset({"200", "401:jwks_unavailable"})) for t in maybe_unavailable]
    cycle = itertools.cycle(kinds)
    for i in range(total):
        token, expect = next(cycle)
        yield Req(bearer(token), expect, "GET" if i % 2 == 0 else "POST")


def fetches(stack: AdversarialStack) -> int:
    return sum(stack.keycloak.jwks_fetches.values())


@contextlib.asynccontextmanager
async def fault_stack(
    db_dir: Path, env: Mapping[str, str] | None = None, *, keycloak_behaviour: Behaviour | None = None
) -> AsyncIterator[AdversarialStack]:
    async with adversarial_stack(
        db_dir, keycloak_behaviour=keycloak_behaviour, environ={**FAULT_ENV, **(env or {})}
    ) as stack:
        yield stack


async def audit_totals(stack: AdversarialStack, *, flush: bool = True) -> tuple[int, int]:
    """(written, dropped) by the audit writer so far, after it flushed what it accepted."""
    sink = stack.sink
    if flush:
        async with asyncio.timeout(30):
            await sink.flushed()
    return sink.written, sum(sink.dropped.values())


async def await_fresh(
    stack: AdversarialStack, realms: Sequence[FakeRealm], started: float, *, bound: int = 400
) -> float:
    """Seconds from `started` until /readyz is 200 and every realm in `realms` is fresh.

    Waits on events (the next certs request reaching the fake Keycloak), never on a timer; bounded."""
    runtime = stack.app.runtime
    assert runtime is not None

    async def recovered() -> bool:
        response = await stack.client.get(f"{stack.url}/readyz")
        return response.status_code == 200 and all(runtime.cache.state(r.name) == "fresh" for r in realms)

    async with asyncio.timeout(30):
        for _ in range(bound):
            for _ in range(50):  # each poll is an awaited round trip: the service runs meanwhile
                if await recovered():
                    return time.perf_counter() - started
            pending = [r for r in realms if runtime.cache.state(r.name) != "fresh"] or list(realms)
            name = pending[0].name
            await stack.keycloak.wait_for_jwks_fetches(name, stack.keycloak.jwks_fetches[name] + 1)
    raise AssertionError("did not recover")
