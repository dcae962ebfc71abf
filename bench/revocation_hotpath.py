"""The revocation check's cost on the hot path, in process: a verified-token cache hit with no
revocations, then with N held (none covering the token), interleaved A/B so machine load hits both.

Usage: .venv/bin/python -P bench/revocation_hotpath.py [--revocations 10000] [--calls 200000] [--rounds 5]

(`-P`: without it Python puts bench/ first on sys.path, and bench/keycloak.py, the fake Keycloak's
launcher, shadows the `keycloak` library that webhook.app imports.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx

from webhook.app import Dependencies, build_runtime
from webhook.config import Settings
from webhook.db.datastore import DataStore
from webhook.db.engine import make_engine
from webhook.revocation.active import Revocation
from webhook.revocation.service import RevocationPolicy, RevocationService
from webhook.testing.keycloak import FakeKeycloak


async def measure(revocations: int, calls: int, rounds: int) -> None:
    async with FakeKeycloak.start() as keycloak:
        realm = keycloak.add_realm(f"tenant-{uuid.uuid4()}")
        settings = Settings.from_environ({"KEYCLOAK_URL": keycloak.url})
        engine = make_engine("sqlite+aiosqlite:///:memory:")
        service = RevocationService(DataStore(engine), policy=RevocationPolicy(fail_closed=False))
        async with httpx.AsyncClient() as client:
            bare = build_runtime(settings, client, Dependencies())
            held = build_runtime(settings, client, Dependencies(), revocations=service)
            now = time.time()
            for i in range(revocations):
                key = str(uuid.uuid4())
                sid, sub = (key, None) if i % 2 == 0 else (None, key)
                service.set.apply(Revocation(realm.name, sid, sub, now, now + 3600, now))
            token = keycloak.mint(realm.name)
            for runtime in (bare, held):
                await runtime.verifier.verify(token)  # into each verified-token cache
            results: dict[str, list[float]] = {"none": [], f"{revocations}": []}
            for _ in range(rounds):
                for name, runtime in (("none", bare), (f"{revocations}", held)):
                    verify = runtime.verifier.verify
                    started = time.perf_counter()
                    for _ in range(calls):
                        await verify(token)
                    results[name].append((time.perf_counter() - started) / calls * 1e6)
            await bare.cache.close()
            await held.cache.close()
        await engine.dispose()
    base = statistics.median(results["none"])
    with_revocations = statistics.median(results[f"{revocations}"])
    print(f"cache-hit verify: {base:.2f} µs with no revocations, {with_revocations:.2f} µs with {revocations:,} held")
    print(f"  revocation check: +{with_revocations - base:.2f} µs per request (medians of {rounds} rounds x {calls:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revocations", type=int, default=10000)
    parser.add_argument("--calls", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(measure(args.revocations, args.calls, args.rounds))


if __name__ == "__main__":
    main()
