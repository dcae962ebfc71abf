"""`webhook api-keys`: create, list, rotate and revoke a tenant's API keys with the service's admin client.

Rules of this module:
- The same policy as the action (`app.api_key_policy`): the same checks of name, roles and expiry,
  and every change recorded with the actor `cli:<user>`, source `cli`.
- A secret is printed once, on stdout; log lines of the admin calls go to stderr so stdout stays
  the command's output. Errors exit 1 with a message that never holds a secret.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from webhook.actions.apikey import parse_expiry, parse_roles
from webhook.cli.common import fail, format_option, format_table, load_settings
from webhook.core.realms import parse_realm_name
from webhook.db.datastore import DataStore
from webhook.observability.logs import configure
from webhook.provisioning.apikeyclient import name_problem
from webhook.provisioning.apikeys import Actor, ApiKeyError, ApiKeyService, IssuedKey
from webhook.provisioning.keycloakadmin import KeycloakAdminError
from webhook.settings import Settings
from webhook.wiring import Dependencies, api_key_policy, http_client

T = TypeVar("T")


@click.group("api-keys")
def api_keys() -> None:
    """A tenant's API keys, with the service's Keycloak admin client (every change recorded, source cli)."""


_TENANT = click.option("--tenant", "tenant_id", required=True, help="Tenant UUID (the key lives in tenant-<uuid>).")
_KEY = click.option("--name", required=True, help="The key's name (its client id).")


def _api_key_run(settings: Settings, job: Callable[[ApiKeyService], Awaitable[T]]) -> T:
    """Run `job` with the API key service; errors exit 1 with a message (never a secret)."""

    configure(settings.log_level, settings.log_format)
    structlog.configure(  # the admin calls' log lines go to stderr: stdout is the command's output
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer)
        if settings.log_format == "json"
        else structlog.PrintLoggerFactory(sys.stderr)
    )

    async def run() -> T:
        store = DataStore.from_settings(settings)
        try:
            async with http_client(settings) as client:
                service = api_key_policy(settings, store, client, Dependencies(http_client=client)).service
                if service is None:
                    fail("API keys need KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
                return await job(service)
        except (ApiKeyError, KeycloakAdminError) as exc:
            fail(str(exc), code=1)
        except SQLAlchemyError as exc:
            fail(f"database {settings.database_url}: {type(exc).__name__} (run `webhook db upgrade`?)", code=1)
        finally:
            await store.dispose()

    try:
        return asyncio.run(run())
    finally:
        configure(settings.log_level, settings.log_format)  # back to stdout for whatever runs next


def _cli_actor() -> Actor:
    return Actor(who=f"cli:{getpass.getuser()}", source="cli")


def _tenant(tenant_id: str) -> str:
    tenant_id = tenant_id.lower()
    if parse_realm_name(f"tenant-{tenant_id}") is None:
        fail("--tenant must be a UUID")
    return tenant_id


def _print_issued(issued: IssuedKey, fmt: str) -> None:
    output = {**issued.info.as_output(), "realm": issued.realm, "client_secret": issued.secret}
    if fmt == "json":
        click.echo(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode())
        return
    for name, value in output.items():
        click.echo(f"{name + ':':15} {', '.join(value) if isinstance(value, list) else value}")
    click.echo("the secret is shown once: store it now", err=True)


@api_keys.command("create")
@_TENANT
@_KEY
@click.option("--role", "roles", multiple=True, required=True, help="A role of the key (repeat; the first is default).")
@click.option("--expires-at", default=None, help="ISO 8601 with a time zone (absent: never expires).")
@format_option
def api_keys_create(*, tenant_id: str, name: str, roles: tuple[str, ...], expires_at: str | None, fmt: str) -> None:
    """Create a key; prints its secret once."""
    settings = load_settings()
    tenant = _tenant(tenant_id)
    problems: dict[str, str] = {}
    if (problem := name_problem(name)) is not None:
        problems["name"] = problem
    wanted = parse_roles(list(roles), problems)
    expiry = parse_expiry(expires_at, dt.datetime.now(dt.UTC), problems)
    never = sorted(set(wanted) & (settings.forbidden_roles | settings.platform_roles))
    if never:
        problems["roles"] = f"never given to an API key: {', '.join(never)}"
    if problems:
        fail("; ".join(f"{field}: {problem}" for field, problem in sorted(problems.items())))
    issued = _api_key_run(settings, lambda service: service.create(tenant, name, wanted, expiry, _cli_actor()))
    _print_issued(issued, fmt)


@api_keys.command("list")
@_TENANT
@format_option
def api_keys_list(*, tenant_id: str, fmt: str) -> None:
    """The tenant's keys (never a secret)."""
    settings = load_settings()
    tenant = _tenant(tenant_id)
    keys = [k.as_output() for k in _api_key_run(settings, lambda service: service.list(tenant))]
    if fmt == "json":
        click.echo(orjson.dumps(keys, option=orjson.OPT_INDENT_2).decode())
        return
    headers = [("name", 30), ("roles", 50), ("expires_at", 25), ("enabled", 7), ("created_by", 36)]
    rows = [[k["name"], ",".join(k["roles"]), k["expires_at"] or "never", k["enabled"], k["created_by"]] for k in keys]
    click.echo(format_table(headers, rows))


@api_keys.command("rotate")
@_TENANT
@_KEY
@format_option
def api_keys_rotate(*, tenant_id: str, name: str, fmt: str) -> None:
    """A new secret for the key (the old one and, with REVOCATIONS, its tokens stop working); prints it once."""
    settings = load_settings()
    tenant = _tenant(tenant_id)
    _print_issued(_api_key_run(settings, lambda service: service.rotate(tenant, name, _cli_actor())), fmt)


@api_keys.command("revoke")
@_TENANT
@_KEY
def api_keys_revoke(*, tenant_id: str, name: str) -> None:
    """Delete the key's client: it gets no new token (and, with REVOCATIONS, its live tokens end)."""
    settings = load_settings()
    tenant = _tenant(tenant_id)
    info = _api_key_run(settings, lambda service: service.revoke(tenant, name, _cli_actor()))
    click.echo(f"{info.name}: revoked")
