"""Pre-fill the audit table with N rows, so the `bad` scenarios run against a production-sized table.

Usage: .venv/bin/python bench/prefill.py URL [--rows 1000000] [--schema NAME] [--realm tenant-<uuid>]
       .venv/bin/python bench/prefill.py URL --count            # print the row count only

URL is a DATABASE_URL (`sqlite+aiosqlite:///path` or `postgresql+asyncpg://user@127.0.0.1:5432/db`,
loopback only). The schema is migrated to head first (the same Alembic migrations as the service),
then rows are bulk-inserted through SQLAlchemy Core on the service's own table (`webhook.audit.store`):
distinct token hashes, mostly `bad_signature`, claimed facts shaped like the bench realm's tokens,
first/last seen spread over the last 90 days (the retention window). Rows already present count
towards N: running it twice does not double the table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import sys
import time
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from webhook.audit.store import TABLE
from webhook.db.engine import make_engine, migrate

CHUNK = 5000
REASONS = ("bad_signature",) * 8 + ("expired", "unknown_kid", "malformed_token", "wrong_token_type")


def rows(count: int, realm: str, rng: random.Random) -> list[dict[str, Any]]:
    now = dt.datetime.now(dt.UTC)
    tenant = realm.removeprefix("tenant-")[:36]
    out = []
    for _ in range(count):
        digest = rng.randbytes(32).hex()
        last = now - dt.timedelta(seconds=rng.uniform(0, 90 * 86400))
        out.append(
            {
                "fold_key": digest,
                "reason": rng.choice(REASONS),
                "token_sha256": digest,
                "realm": realm,
                "tenant_id": tenant,
                "iss": f"http://127.0.0.1:18090/realms/{realm}",
                "kid": "bench-kid",
                "alg": "RS256",
                "sub": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "azp": "admin-portal",
                "jti": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "client_ip_untrusted": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "user_agent_untrusted": "Mozilla/5.0 (bench prefill)",
                "hook_mode": "GET",
                "source": "hook",
                "request_id": rng.randbytes(16).hex(),
                "detail": "signature does not verify",
                "first_seen": last - dt.timedelta(seconds=rng.uniform(0, 3600)),
                "last_seen": last,
                "occurrences": rng.choice((1, 1, 1, 2, 3, 7)),
            }
        )
    return out


async def count_rows(url: str, schema: str | None) -> int:
    engine = make_engine(url, schema=schema)
    try:
        async with engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(TABLE))).scalar_one())
    finally:
        await engine.dispose()


async def prefill(url: str, schema: str | None, want: int, realm: str) -> None:
    engine = make_engine(url, schema=schema)
    try:
        await migrate(engine, "upgrade", "head", schema=schema)
        async with engine.connect() as connection:
            have = int((await connection.execute(select(func.count()).select_from(TABLE))).scalar_one())
        missing = want - have
        print(f"prefill: {have:,} rows present, adding {max(0, missing):,}", flush=True)
        rng = random.Random(os.getpid() ^ time.time_ns())
        started, done = time.monotonic(), 0
        while done < missing:
            batch = rows(min(CHUNK, missing - done), realm, rng)
            async with engine.begin() as connection:
                await connection.execute(TABLE.insert(), batch)
            done += len(batch)
            if done % 100_000 < CHUNK or done == missing:
                rate = done / max(1e-9, time.monotonic() - started)
                print(f"prefill: {have + done:,}/{want:,} rows ({rate:,.0f}/s)", flush=True)
    finally:
        await engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--schema", default=None)
    ap.add_argument("--realm", default=f"tenant-{uuid.uuid4()}")
    ap.add_argument("--count", action="store_true", help="print the number of rows and exit")
    a = ap.parse_args()
    parsed = make_url(a.url)
    if parsed.get_backend_name() != "sqlite" and parsed.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"prefill: refusing a non-loopback database host {parsed.host!r}")
    if a.count:
        print(asyncio.run(count_rows(a.url, a.schema)))
        return
    asyncio.run(prefill(a.url, a.schema, a.rows, a.realm))


if __name__ == "__main__":
    main()
