"""The database of the actions: one engine, sessions, write transactions, and the schema's readiness.

Rules of this module:
- One `DataStore` per process, made by a composition root (the app's lifespan, the CLI) and disposed
  of by it; one session per task (`transaction()` or `sessions()`), never shared.
- `transaction()` is one committed-or-rolled-back transaction. On SQLite, write transactions of this
  process are serialized by a lock: SQLite has one writer at a time, and a deferred transaction that
  read before writing can fail with "database is locked" instead of waiting. PostgreSQL relies on
  its own locking (primary keys, unique constraints, `FOR UPDATE SKIP LOCKED`).
- `ready` is set once the schema is usable: at once when migrations are the operator's job, or when
  `migrate_until_ready()` (DATABASE_AUTO_MIGRATE) has succeeded; it retries with capped backoff, in
  the background, so the service answers meanwhile (the actions say `unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from webhook.db.engine import make_engine, make_sessionmaker, migrate
from webhook.settings import Settings

RETRY_INITIAL_SECONDS: Final = 0.05


class DataStore:
    """Engine, session factory and write discipline of the service's domain tables."""

    def __init__(self, engine: AsyncEngine, *, schema: str | None = None, ready: bool = True) -> None:
        self.engine = engine
        self.schema = schema
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self.dialect: str = engine.dialect.name
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self.ready = asyncio.Event()
        self.last_error: str | None = None
        if ready:
            self.ready.set()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> DataStore:
        """A store on DATABASE_URL / DATABASE_SCHEMA; ready at once unless DATABASE_AUTO_MIGRATE."""
        engine = make_engine(settings.database_url.get_secret_value(), schema=settings.database_schema, **options)
        return cls(engine, schema=settings.database_schema, ready=not settings.database_auto_migrate)

    @property
    def single_writer(self) -> bool:
        """True on SQLite, where only one process may write (and claim jobs)."""
        return self._write_lock is not None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed when the block ends, rolled back if it raises."""
        lock = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        async with lock, self.sessions() as session, session.begin():
            yield session

    async def migrate_until_ready(self, log: Any, *, retry_max: float = 30.0) -> None:
        """Upgrade the schema to head, retrying with capped backoff until it works; then set `ready`."""
        delay = RETRY_INITIAL_SECONDS
        while True:
            try:
                await migrate(self.engine, "upgrade", "head", schema=self.schema)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                first = self.last_error is None
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if first:
                    log.warning("datastore.migrate_failed", error=self.last_error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, retry_max)
                continue
            self.last_error = None
            self.ready.set()
            return

    async def dispose(self) -> None:
        """Close the pool."""
        await self.engine.dispose()


__all__ = ["DataStore"]
