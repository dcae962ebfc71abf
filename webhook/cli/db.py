"""`webhook db`: Alembic migrations run in process on DATABASE_URL / DATABASE_SCHEMA.

Rules of this module:
- Only the database settings are needed (no Keycloak): `load_settings(require_keycloak=False)`.
- Progress lines go to stderr; `current` prints the revisions and the schema's state on stdout.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import click

from webhook.audit.schema import inspect_schema
from webhook.cli.common import load_settings, with_engine
from webhook.db.engine import current_revision, head_revision, migrate
from webhook.settings import Settings


@click.group()
def db() -> None:
    """Database migrations (Alembic, run in process on DATABASE_URL / DATABASE_SCHEMA)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the database to REVISION (default: head)."""
    settings = load_settings(require_keycloak=False)
    asyncio.run(_migrate(settings, "upgrade", revision))
    click.echo(f"database at {revision}: {settings.database_url}", err=True)


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the database to REVISION (`base` removes every table)."""
    settings = load_settings(require_keycloak=False)
    asyncio.run(_migrate(settings, "downgrade", revision))
    click.echo(f"database at {revision}: {settings.database_url}", err=True)


@db.command("stamp")
@click.argument("revision")
def db_stamp(revision: str) -> None:
    """Record REVISION as applied without running it (for a schema made by hand or half-applied)."""
    settings = load_settings(require_keycloak=False)
    asyncio.run(_migrate(settings, "stamp", revision))
    click.echo(f"database stamped {revision}: {settings.database_url}", err=True)


@db.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one."""
    settings = load_settings(require_keycloak=False)
    current = asyncio.run(with_engine(settings, current_revision))
    found = asyncio.run(with_engine(settings, inspect_schema))
    click.echo(f"current: {current or '(none)'}\nhead:    {head_revision()}\nschema:  {found.state}")
    if found.advice:
        click.echo(f"advice:  {found.advice}")


async def _migrate(settings: Settings, action: Literal["upgrade", "downgrade", "stamp"], revision: str) -> None:
    await with_engine(settings, lambda engine: migrate(engine, action, revision, schema=settings.database_schema))
