"""Fixtures for the rejected-token audit: a database per test on SQLite *and* PostgreSQL.

PostgreSQL is TEST_POSTGRES_URL (default: the machine's server, database `test`). Each test gets
its own schema, dropped afterwards. An unreachable server makes the tests error, never skip.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


async def _admin(statement: str) -> None:
    engine = create_async_engine(postgres_url())
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL: a fresh SQLite file, or the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'audit.sqlite3'}"
    return postgres_url()


@pytest.fixture
def db_schema(db_url: str) -> Iterator[str | None]:
    """A schema of its own for this test on PostgreSQL (created empty, dropped after); None on SQLite."""
    if db_url.startswith("sqlite"):
        yield None
        return
    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE SCHEMA "{schema}"'))  # fails (test errors) if PostgreSQL is down
    try:
        yield schema
    finally:
        asyncio.run(_admin(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def db_env(db_url: str, db_schema: str | None) -> dict[str, str]:
    """The DATABASE_* variables pointing at this test's database."""
    return {"DATABASE_URL": db_url, "DATABASE_SCHEMA": db_schema or "", "DATABASE_AUTO_MIGRATE": "true"}


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
