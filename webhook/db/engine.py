"""The relational database: declarative base, engines and sessions, and migrations (Alembic).

Rules of this module:
- One `Base` for every model of the service. Its MetaData names indexes and constraints by
  convention, so autogenerate, migrations and downgrades are deterministic.
- Models carry no schema. On PostgreSQL the configured schema (`DATABASE_SCHEMA`) is the
  connection's `search_path`, so the same models and migrations serve any schema; SQLite has none.
- Nothing connects at import time: engines are made by a composition root (the app's lifespan,
  the CLI, `migrations/env.py`) and disposed of by it.
- Migrations run through Alembic's command API on a connection of our engine, never a subprocess.
  That API keeps module-level state (`alembic.context`, `alembic.op`), so migrations run one at a
  time in the process: per event loop an asyncio lock, and across threads (the audit writer has
  its own loop and thread) a threading lock around Alembic's command.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import weakref
from pathlib import Path
from typing import Any, Final, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import CreateSchema
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MIGRATIONS_DIR: Final = Path(__file__).resolve().parents[2] / "migrations"
CONNECT_TIMEOUT_SECONDS: Final = 10.0


class Base(DeclarativeBase):
    """Base class of every model; see the module rules for names and schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware (UTC) datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # the CLI reads while the service writes
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str, *, schema: str | None = None, **options: Any) -> AsyncEngine:
    """An async engine for `url` (asyncpg or aiosqlite). No connection is made yet.

    SQLite: the file's directory is created. PostgreSQL: `schema` becomes the search path.
    """
    parsed = make_url(url)
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    else:
        connect_args["timeout"] = CONNECT_TIMEOUT_SECONDS
        if schema:
            connect_args["server_settings"] = {"search_path": schema}
        options.setdefault("pool_pre_ping", True)
    options.setdefault("hide_parameters", True)  # errors and logs never echo row values
    engine = create_async_engine(parsed, connect_args=connect_args, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """One factory per engine; one session per task (sessions are not shared between tasks)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for `migrations/`, optionally bound to an open connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest migration's revision id."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def ensure_schema(connection: AsyncConnection, schema: str | None) -> None:
    """Create the PostgreSQL schema the search path names, if any (SQLite has none)."""
    if schema and connection.dialect.name == "postgresql":
        await connection.execute(CreateSchema(schema, if_not_exists=True))


_ALEMBIC_LOCK: Final = threading.Lock()


def _run_command(connection: Connection, action: Literal["upgrade", "downgrade", "stamp"], revision: str) -> None:
    config = alembic_config(connection)
    with _ALEMBIC_LOCK:
        if action == "upgrade":
            command.upgrade(config, revision)
        elif action == "downgrade":
            command.downgrade(config, revision)
        else:
            command.stamp(config, revision)


_MIGRATION_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _MIGRATION_LOCKS.get(loop)
    if lock is None:
        lock = _MIGRATION_LOCKS[loop] = asyncio.Lock()
    return lock


async def migrate(
    engine: AsyncEngine,
    action: Literal["upgrade", "downgrade", "stamp"] = "upgrade",
    revision: str = "head",
    *,
    schema: str | None = None,
) -> None:
    """Upgrade, downgrade or stamp the database to `revision`, in one transaction (one migration at a time)."""
    async with _migration_lock(), engine.begin() as connection:
        await ensure_schema(connection, schema)
        await connection.run_sync(_run_command, action, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: no migration applied)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current)
