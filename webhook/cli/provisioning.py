"""Realm provisioning commands: `webhook worker` and `webhook provisioning status|retry|check|secret|render`.

Rules of this module:
- `worker` runs the provisioning worker alone until SIGINT/SIGTERM (`--once`: the jobs due now,
  status 1 if any failed); it needs the Keycloak admin client's credentials.
- `check` changes nothing in Keycloak: it reports drift from the template, status 1 on any.
- `secret` prints a client secret on stdout only; nothing here logs or stores it.
- `status`, `retry` and `render` need only the database settings (no Keycloak).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
import sys
from typing import Any, Literal

import click
import orjson

from webhook.cli.common import fail, format_option, format_table, load_settings, with_session, with_store
from webhook.core.realms import parse_realm_name
from webhook.db.datastore import DataStore
from webhook.observability.logs import configure, get_logger
from webhook.provisioning.jobs import job_as_dict, list_jobs, requeue
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin, KeycloakAdminError
from webhook.provisioning.reconciler import RealmReconciler
from webhook.provisioning.templates import PortalUrls, load_template, render, render_named
from webhook.settings import Settings
from webhook.wiring import Dependencies, http_client, provisioning_worker


@click.command()
@click.option("--once", is_flag=True, help="Attempt the jobs due now, then exit (status 1 if any failed).")
def worker(once: bool) -> None:
    """Run the realm provisioning worker alone (without the HTTP service), until SIGINT/SIGTERM."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    if settings.keycloak_admin_client_secret is None:
        fail("the worker needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
    sys.exit(asyncio.run(_run_worker(settings, once=once)))


async def _run_worker(settings: Settings, *, once: bool) -> int:
    store = DataStore.from_settings(settings)
    try:
        if not store.ready.is_set():
            await store.migrate_until_ready(get_logger("webhook.db.datastore"))
        async with http_client(settings) as client:
            runner = provisioning_worker(settings, store, client, Dependencies(http_client=client))
            if once:
                attempted = 0
                while count := await runner.run_once():
                    attempted += count
                failed = [o for o in runner.outcomes if o.outcome != "done"]
                click.echo(f"attempted {attempted} job(s), {len(failed)} not done", err=True)
                return 1 if failed else 0
            task = asyncio.create_task(runner.run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return 0
    finally:
        await store.dispose()


@click.group()
def provisioning() -> None:
    """Realm provisioning jobs (the outbox the actions write): status, retry, check drift, secret, render."""


@provisioning.command("status")
@click.option("--realm", help="Only this realm.")
@click.option(
    "--status", "status_", type=click.Choice(["pending", "running", "done", "failed"]), help="Only this status."
)
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@format_option
def provisioning_status(*, realm: str | None, status_: str | None, limit: int, fmt: str) -> None:
    """Provisioning jobs, most recently updated first (exit 1 if --realm names no job)."""
    settings = load_settings(require_keycloak=False)
    jobs = asyncio.run(
        with_session(settings, lambda session: list_jobs(session, realm=realm, status=status_, limit=limit))
    )
    rows = [job_as_dict(job) for job in jobs]
    if fmt == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        headers = [("realm", 86), ("status", 8), ("attempts", 8), ("next_attempt_at", 20), ("last_error", 120)]
        table = [[r["realm"], r["status"], r["attempts"], r["next_attempt_at"][:19], r["last_error"]] for r in rows]
        click.echo(format_table(headers, table))
    if realm is not None and not rows:
        sys.exit(1)


@provisioning.command("retry")
@click.argument("realm")
def provisioning_retry(realm: str) -> None:
    """Make REALM's failed (or done) job pending again, due now: the worker re-converges the realm."""
    settings = load_settings(require_keycloak=False)
    now = dt.datetime.now(dt.UTC)
    done = asyncio.run(with_store(settings, lambda store: requeue(store, realm, now)))
    if not done:
        fail(f"no failed or done job for realm {realm!r}", code=1)
    click.echo(f"{realm}: pending again")


def _admin(settings: Settings, client: Any) -> KeycloakAdmin:
    secret = settings.keycloak_admin_client_secret
    if secret is None:
        fail("this command needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
    credentials = AdminCredentials(
        settings.keycloak_url,
        settings.keycloak_admin_realm,
        settings.keycloak_admin_client_id,
        secret,
        timeout=settings.keycloak_admin_timeout,
    )
    return KeycloakAdmin(client, credentials)


@provisioning.command("check")
@click.option("--realm", "realms", multiple=True, help="A realm to check (repeatable).")
@click.option("--all", "every", is_flag=True, help="Every realm with a provisioning job in the database.")
def provisioning_check(*, realms: tuple[str, ...], every: bool) -> None:
    """Report drift of live realms from the template (nothing is changed); exit 1 on any drift."""
    if bool(realms) == every:
        fail("give --realm R (one or more) or --all")
    settings = load_settings()
    names = list(realms)
    if every:
        jobs = asyncio.run(with_session(settings, lambda session: list_jobs(session, limit=1_000_000)))
        names = sorted(job.realm for job in jobs)
    urls = PortalUrls(voting_portal=settings.voting_portal_url, admin_portal=settings.admin_portal_url)
    sys.exit(asyncio.run(_check(settings, names, urls)))


async def _check(settings: Settings, names: list[str], urls: PortalUrls) -> int:
    drifted = 0
    async with http_client(settings) as client:
        reconciler = RealmReconciler(_admin(settings, client))
        for name in names:
            try:
                kind, rendered = render_named(name, urls)
                found = await reconciler.check(rendered, kind)
            except (ValueError, KeycloakAdminError) as exc:
                found = [f"cannot check: {exc}"]
            drifted += bool(found)
            click.echo(f"{name}: {'drift' if found else 'ok'}")
            for line in found:
                click.echo(f"  - {line}")
    click.echo(f"{len(names)} realm(s) checked, {drifted} with drift", err=True)
    return 1 if drifted else 0


@provisioning.command("secret")
@click.argument("realm")
@click.option("--client", "client_id", default="api-key-client", show_default=True)
def provisioning_secret(realm: str, client_id: str) -> None:
    """Print the secret of REALM's confidential client (stdout only: the service never logs or stores it)."""
    settings = load_settings()
    sys.exit(asyncio.run(_secret(settings, realm, client_id)))


async def _secret(settings: Settings, realm: str, client_id: str) -> int:
    async with http_client(settings) as client:
        admin = _admin(settings, client)
        try:
            found = [c for c in await admin.clients(realm) if c.get("clientId") == client_id]
            if not found:
                fail(f"realm {realm} has no client {client_id}", code=1)
            secret = await admin.client_secret(realm, str(found[0]["id"]))
        except KeycloakAdminError as exc:
            fail(str(exc), code=1)
    click.echo(secret)
    return 0


@provisioning.command("render")
@click.option("--tenant", "tenant_id", required=True, help="Tenant UUID.")
@click.option("--event", "event_id", default=None, help="Event UUID (an event realm; else a tenant realm).")
def provisioning_render(tenant_id: str, event_id: str | None) -> None:
    """Print the realm representation the worker would send Keycloak (from the packaged template)."""
    settings = load_settings(require_keycloak=False)
    tenant_id, event_id = tenant_id.lower(), event_id.lower() if event_id else None
    name = f"tenant-{tenant_id}" + (f"-event-{event_id}" if event_id else "")
    if parse_realm_name(name) is None:
        fail("--tenant and --event must be UUIDs")
    kind: Literal["tenant", "event"] = "event" if event_id else "tenant"
    urls = PortalUrls(
        voting_portal=settings.voting_portal_url,
        admin_portal=settings.admin_portal_url,
        backchannel_logout=settings.backchannel_logout_url,
    )
    realm = render(load_template(kind), kind, tenant_id=tenant_id, event_id=event_id, urls=urls)
    click.echo(orjson.dumps(realm, option=orjson.OPT_INDENT_2).decode())
