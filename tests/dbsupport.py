"""PostgreSQL for tests: one URL, and a schema of its own per test that is dropped afterwards.

TEST_POSTGRES_URL (default: the machine's server, database `test`). An unreachable server makes
the tests that ask for it error, never skip: the suite must run on PostgreSQL as well as SQLite.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

DEFAULT_POSTGRES_URL: Final = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    """The PostgreSQL the tests use."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


async def admin(statement: str) -> None:
    """Run one DDL statement on the test PostgreSQL."""
    engine = create_async_engine(postgres_url())
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def own_schema(url: str, prefix: str) -> Iterator[str | None]:
    """A fresh schema named `<prefix>_<random>` on PostgreSQL (dropped after); None for SQLite URLs."""
    if url.startswith("sqlite"):
        yield None
        return
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin(f'CREATE SCHEMA "{schema}"'))  # fails (the test errors) if PostgreSQL is down
    try:
        yield schema
    finally:
        asyncio.run(admin(f'DROP SCHEMA "{schema}" CASCADE'))
