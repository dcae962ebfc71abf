"""Alembic environment (the `async` template's shape) for the service's database.

Two ways in:
- `webhook db ...`, the app's auto-migrate and the tests pass an open connection in
  `config.attributes["connection"]` (Alembic cookbook, "connection sharing"): we run on it.
- The `alembic` command (`alembic upgrade head`, `alembic check`, `alembic revision
  --autogenerate`) builds the engine from DATABASE_URL / DATABASE_SCHEMA, as the service does.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection

import webhook.audit.store
import webhook.db.models
import webhook.revocation.store  # noqa: F401 - the three register every model on Base.metadata
from webhook.db.engine import Base, UtcDateTime, ensure_schema, make_engine
from webhook.settings import Settings

config = context.config
target_metadata = Base.metadata


def _settings() -> Settings:
    return Settings.from_environ(os.environ, require_keycloak=False)


def render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy ones: migrations must not import the app."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_item=render_item,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL for DATABASE_URL's dialect instead of connecting (`alembic upgrade --sql`)."""
    context.configure(
        url=_settings().database_url.get_secret_value(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect with the service's engine settings and run the migrations on that connection."""
    settings = _settings()
    engine = make_engine(
        settings.database_url.get_secret_value(), schema=settings.database_schema, poolclass=pool.NullPool
    )
    try:
        async with engine.begin() as connection:
            await ensure_schema(connection, settings.database_schema)
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
