"""Pre-load active revocations into the benchmark's database (`PRELOAD_REVOCATIONS=N bench/run.sh ...`).

Usage: .venv/bin/python bench/revocations.py --database URL --realm REALM --count N

Migrates the database, then inserts revocations of the benchmark realm until N are active: half by
session (random sid), half by user (random sub, cutoff now), each for a day. None covers a benchmark
token (their sid and sub are random too), so the hot path pays the lookups and still answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from webhook.db.datastore import DataStore
from webhook.db.engine import make_engine, migrate
from webhook.revocation.active import Revocation
from webhook.revocation.store import active, insert

DAY = 86400.0


async def preload(url: str, realm: str, count: int) -> int:
    store = DataStore(make_engine(url))
    try:
        await migrate(store.engine)
        now = time.time()
        async with store.sessions() as session:
            have = len(await active(session, now, realm=realm))
        async with store.transaction() as session:
            for i in range(have, count):
                key = str(uuid.uuid4())
                sid, sub = (key, None) if i % 2 == 0 else (None, key)
                await insert(session, Revocation(realm, sid, sub, now, now + DAY, now), source="operator", jti=None)
        return max(count, have)
    finally:
        await store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True)
    parser.add_argument("--realm", required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    total = asyncio.run(preload(args.database, args.realm, args.count))
    print(f"revocations.py: {total} active revocations in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
