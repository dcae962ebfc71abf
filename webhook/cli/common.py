"""What the `webhook` commands share: settings loading, failing with a message, database runners, tables.

Rules of this module:
- `fail()` is the one way a command exits with an error: `error: <message>` on stderr, status 2 for
  bad input or configuration (the default), 1 for a failure at run time (database, Keycloak).
- `load_settings()` reads the process environment once per command; a bad setting exits 2 naming
  the variable.
- `with_engine()`, `with_session()` and `with_store()` run a job on the settings' database and
  exit 1 naming the database (by its masked URL) on any error.
- `format_table()` cells print claimed values: non-printables become '?' and long ones are cut.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import NoReturn, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webhook.db.datastore import DataStore
from webhook.db.engine import make_engine, make_sessionmaker
from webhook.settings import ConfigError, Settings

T = TypeVar("T")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print `error: <message>` on stderr and exit with `code` (2: bad input or configuration)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_settings(*, require_keycloak: bool = True) -> Settings:
    """Settings from the process environment, or exit 2 naming the bad variable."""
    try:
        return Settings.from_environ(os.environ, require_keycloak=require_keycloak)
    except ConfigError as exc:
        fail(str(exc))


format_option = click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _printable(value: object, width: int) -> str:
    """A cell: claimed values may hold terminal escapes, so non-printables become '?'."""
    text = "-" if value is None else str(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= width else text[: width - 1] + "~"


def format_table(headers: list[tuple[str, int]], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: `headers` are (name, width) pairs, each cell cut to its width."""
    lines = ["  ".join(f"{name:<{width}}" for name, width in headers).rstrip()]
    for row in rows:
        cells = (f"{_printable(v, w):<{w}}" for v, (_, w) in zip(row, headers, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


@contextlib.contextmanager
def _database_errors(settings: Settings) -> Iterator[None]:
    """Any error in the block exits 1 naming the database (by its masked URL) and the error."""
    try:
        yield
    except Exception as exc:
        fail(f"database {settings.database_url}: {type(exc).__name__}: {exc}", code=1)


async def with_engine(settings: Settings, job: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `job` with an engine for the settings' database; exit 1 naming the database on error."""
    engine = make_engine(settings.database_url.get_secret_value(), schema=settings.database_schema)
    try:
        with _database_errors(settings):
            return await job(engine)
    finally:
        await engine.dispose()


async def with_session(settings: Settings, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `job` in an ORM session on the settings' database (errors as `with_engine`)."""

    async def run(engine: AsyncEngine) -> T:
        async with make_sessionmaker(engine)() as session:
            return await job(session)

    return await with_engine(settings, run)


async def with_store(settings: Settings, job: Callable[[DataStore], Awaitable[T]]) -> T:
    """Run `job` with a `DataStore` on the settings' database; exit 1 naming the database on error."""
    store = DataStore.from_settings(settings)
    try:
        with _database_errors(settings):
            return await job(store)
    finally:
        await store.dispose()
