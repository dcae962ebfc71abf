"""NOTIFY channels are database-wide: two deployments (schemas) sharing one PostgreSQL database must
not apply each other's revocations. Each schema notifies and listens on a channel of its own."""

from __future__ import annotations

import asyncio
import time
from typing import cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import async_sessionmaker

from tests.dbsupport import own_schema, postgres_url
from webhook.db.engine import make_engine
from webhook.revocation.active import Revocation
from webhook.revocation.store import CHANNEL_PREFIX, CHANNEL_SQL, SessionRevocation, from_payload, insert

DSN = postgres_url().replace("postgresql+asyncpg://", "postgresql://")


async def _listen(schema: str, heard: list[Revocation], event: asyncio.Event) -> tuple[str, asyncpg.Connection]:
    connection = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    channel: str = await connection.fetchval(f"SELECT {CHANNEL_SQL}")

    def notified(_connection: object, _pid: int, _channel: str, data: str) -> None:
        heard.append(from_payload(data))
        event.set()

    await connection.add_listener(channel, notified)
    return channel, connection


async def _scenario(mine: str, theirs: str) -> None:
    engine = make_engine(postgres_url(), schema=mine)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(cast(Table, SessionRevocation.__table__).create)
        heard_mine: list[Revocation] = []
        heard_theirs: list[Revocation] = []
        got_mine, got_theirs = asyncio.Event(), asyncio.Event()
        channel_mine, listener_mine = await _listen(mine, heard_mine, got_mine)
        channel_theirs, listener_theirs = await _listen(theirs, heard_theirs, got_theirs)
        try:
            assert channel_mine != channel_theirs
            assert channel_mine.startswith(CHANNEL_PREFIX) and len(channel_mine) <= 63  # an identifier
            now = time.time()
            revocation = Revocation("tenant-a", "sid-1", None, now, now + 600, now)
            async with async_sessionmaker(engine)() as session, session.begin():
                assert await insert(session, revocation, source="operator", jti=None)
            await asyncio.wait_for(got_mine.wait(), timeout=30)
            await listener_theirs.fetchval("SELECT 1")  # a round trip: a notification sent there has arrived
            assert heard_mine == [revocation]
            assert heard_theirs == []
        finally:
            await listener_mine.close()
            await listener_theirs.close()
    finally:
        await engine.dispose()


def test_a_revocation_is_notified_to_its_own_schema_only() -> None:
    """A row inserted in one schema reaches that schema's listener and not one of another schema of the
    same database (before: one channel for all, so a second deployment applied the first's revocations)."""
    with own_schema(postgres_url(), "chan_a") as mine, own_schema(postgres_url(), "chan_b") as theirs:
        assert mine is not None and theirs is not None
        asyncio.run(_scenario(mine, theirs))
