"""Fixtures for the rejected-token audit: a database per test on SQLite *and* PostgreSQL.

PostgreSQL is TEST_POSTGRES_URL (default: the machine's server, database `test`). Each test gets
its own schema, dropped afterwards. An unreachable server makes the tests error, never skip.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.dbsupport import own_schema, postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL: a fresh SQLite file, or the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'audit.sqlite3'}"
    return postgres_url()


@pytest.fixture
def db_schema(db_url: str) -> Iterator[str | None]:
    """A schema of its own for this test on PostgreSQL (created empty, dropped after); None on SQLite."""
    with own_schema(db_url, "audit_test") as schema:
        yield schema


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
