"""Keycloak faults under load (64 concurrent Hasura stand-ins, loopback): down at start, down
mid-run, flapping, slow beyond the fetch timeout, garbage, HTML, 10 MB bodies, redirects.

Each scenario asserts 0 wrong decisions and 0 5xx, bounds the JWKS fetches by the cache rules
(retry interval, single flight), and measures the recovery after the fault ends by awaiting the
next certs request and /readyz (never a timer). Honest tokens of realms whose keys were loaded
must keep working throughout (stale-if-error); a realm never loaded is refused with
`jwks_unavailable` while Keycloak fails, and works once it is back.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from tests.faults.support import Figures, Load, Tokens, audit_totals, await_fresh, fault_stack, fetches, mix
from tests.security.support import AdversarialStack
from webhook.testing.keycloak import Behaviour

pytestmark = pytest.mark.anyio
DEFAULT_N = 640
LONG_N = 10_000


def sizes(default: int = DEFAULT_N, long: int = LONG_N) -> list[object]:
    return [pytest.param(default, id="default"), pytest.param(long, id="long", marks=pytest.mark.slow)]


def fetch_bound(realms: int, seconds: float, retry: float = 1.0, extra_rounds: int = 0) -> int:
    """At most one attempt per realm per retry interval (request path or refresher), plus one."""
    return realms * (2 + extra_rounds + 2 * math.ceil(seconds / retry))


async def finish(stack: AdversarialStack, figures: Figures, load: Load, fetched_before: int = 0) -> None:
    load.finish()
    figures.fetches = fetches(stack) - fetched_before
    figures.audit_written, figures.audit_dropped = await audit_totals(stack)
    assert stack.attacker.hits == []
    assert set(stack.keycloak.requests) <= stack.legit_certs() | {
        ("GET", f"/realms/{n}/protocol/openid-connect/certs") for n in stack.keycloak.jwks_fetches
    }


@pytest.mark.parametrize("total", sizes(DEFAULT_N, 5_000))
async def test_keycloak_down_at_start(tmp_path: Path, total: int) -> None:
    """Down before the service starts: it starts, is not ready, refuses the realms' tokens with
    jwks_unavailable (fail closed), and is ready and accepting within the retry interval of Keycloak's return."""
    figures = Figures(f"keycloak down at start ({total})")
    async with fault_stack(tmp_path, keycloak_behaviour="down") as stack:
        assert (await stack.client.get(f"{stack.url}/readyz")).status_code == 503
        tokens = Tokens(stack)
        honest = [tokens.honest(stack.tenant), tokens.honest(stack.event)]
        forged = tokens.forged()
        load = Load(stack, figures)
        # honest tokens, and forged ones that need a key to be refused, are jwks_unavailable while
        # nothing is loaded (fail closed); the others are refused before any key lookup
        unavailable = [(t, "jwks_unavailable") for pool in honest for t in pool]
        early = [(t, r if r != "bad_signature" else "jwks_unavailable") for t, r in forged]
        await load.run(mix([], unavailable + early, total))
        assert fetches(stack) <= fetch_bound(3, figures.seconds)
        stack.keycloak.set_behaviour("ok")
        ended = time.perf_counter()
        figures.recovery_s = await await_fresh(stack, [stack.tenant, stack.other, stack.event], ended)
        await load.run(mix(honest, forged, total))
        await finish(stack, figures, load)
    figures.check()


@pytest.mark.parametrize("total", sizes())
async def test_keycloak_down_mid_run(tmp_path: Path, total: int) -> None:
    """Down (and keys stale) a quarter into the run, back at three quarters: loaded realms never
    notice (stale-if-error); a realm never loaded is jwks_unavailable only while it is down."""
    figures = Figures(f"keycloak down mid-run ({total})")
    async with fault_stack(tmp_path) as stack:
        tokens = Tokens(stack)
        newcomer = stack.fresh_realm()
        honest = [tokens.honest(stack.tenant), tokens.honest(stack.other), tokens.honest(stack.event)]
        load = Load(stack, figures)
        recovery: list[asyncio.Task[float]] = []
        pinned = [stack.tenant, stack.other, stack.event]

        def progress(done: int) -> None:
            if done == total // 4:
                stack.keycloak.set_behaviour("down")
                stack.clock.advance(stack.settings.jwks_ttl + 1)  # every loaded realm is now stale
            elif done == 3 * total // 4:
                stack.keycloak.set_behaviour("ok")
                # measured while the load goes on
                recovery.append(asyncio.create_task(await_fresh(stack, pinned, time.perf_counter())))

        await load.run(
            mix(honest, tokens.forged(), total, maybe_unavailable=tokens.honest(newcomer)), on_progress=progress
        )
        assert fetches(stack) <= 3 + fetch_bound(4, figures.seconds)
        figures.recovery_s = await recovery[0]
        await finish(stack, figures, load)
    figures.check()


@pytest.mark.parametrize("total", sizes())
async def test_keycloak_flapping(tmp_path: Path, total: int) -> None:
    """Keycloak alternates down/up ten times while keys keep going stale: no honest token refused."""
    figures = Figures(f"keycloak flapping x10 ({total})")
    flips = 10
    async with fault_stack(tmp_path) as stack:
        tokens = Tokens(stack)
        newcomer = stack.fresh_realm()
        honest = [tokens.honest(stack.tenant), tokens.honest(stack.other), tokens.honest(stack.event)]
        load = Load(stack, figures)
        step = max(1, total // (flips + 1))
        marks: dict[str, float] = {}

        def progress(done: int) -> None:
            if done % step == 0 and done // step <= flips:
                down = (done // step) % 2 == 1
                stack.keycloak.set_behaviour("down" if down else "ok")
                if down:
                    stack.clock.advance(stack.settings.jwks_ttl + 1)
                else:
                    marks["ended"] = time.perf_counter()

        await load.run(
            mix(honest, tokens.forged(), total, maybe_unavailable=tokens.honest(newcomer)), on_progress=progress
        )
        stack.keycloak.set_behaviour("ok")
        marks.setdefault("ended", time.perf_counter())
        assert fetches(stack) <= 3 + fetch_bound(4, figures.seconds, extra_rounds=flips)
        figures.recovery_s = await await_fresh(stack, [stack.tenant, stack.other, stack.event], time.perf_counter())
        await finish(stack, figures, load)
    figures.notes = f"flips={flips}"
    figures.check()


OUTCOME = {"slow": "timeout", "garbage": "invalid", "html": "invalid", "huge": "too_large", "redirect": "redirect"}


@pytest.mark.parametrize("mode", list(OUTCOME))
@pytest.mark.parametrize("total", sizes(320, 3_000))
async def test_keycloak_misbehaves(tmp_path: Path, mode: Behaviour, total: int) -> None:
    """Slow beyond the 1 s fetch timeout, garbage, HTML, a 10 MB body, a redirect: keys of loaded
    realms keep serving, the fetch is abandoned (bounded time and size, redirect not followed), and
    everything is fresh again right after Keycloak behaves."""
    figures = Figures(f"keycloak {mode} ({total})")
    async with fault_stack(tmp_path) as stack:
        tokens = Tokens(stack)
        newcomer = stack.fresh_realm()
        honest = [tokens.honest(stack.tenant), tokens.honest(stack.other), tokens.honest(stack.event)]
        stack.keycloak.set_behaviour(mode)
        stack.clock.advance(stack.settings.jwks_ttl + 1)
        load = Load(stack, figures)
        before = fetches(stack)
        await load.run(mix(honest, tokens.forged(), total, maybe_unavailable=tokens.honest(newcomer)))
        assert fetches(stack) - before <= fetch_bound(4, figures.seconds)
        outcome = stack.metrics.fetch[OUTCOME[mode]]._value.get()
        assert outcome >= 1, OUTCOME[mode]
        assert ("GET", "/evil") not in stack.keycloak.requests
        stack.keycloak.set_behaviour("ok")
        stack.keycloak.release_slow()
        ended = time.perf_counter()
        figures.recovery_s = await await_fresh(stack, [stack.tenant, stack.other, stack.event, newcomer], ended)
        await finish(stack, figures, load, before)
    limit = stack.settings.jwks_fetch_timeout + 1.0
    assert figures.max_ms < limit * 1000, (figures.max_ms, load.slowest)  # nobody waits past the fetch timeout
    figures.check()
