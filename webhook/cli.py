"""The `webhook` command: a thin click layer over plain functions (uvicorn's CLI shape).

Commands: serve, dev, check-config, probe-jwks REALM, explain, db upgrade|downgrade|current,
audit list|top|prune, worker, provisioning status|retry|check|secret|render,
sessions revoke|list, api-keys create|list|rotate|revoke. Each reads the settings once; a
bad setting exits with status 2 and a message naming the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import getpass
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, NoReturn, TypeVar

import click
import orjson
import structlog
import uvicorn
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webhook import __version__
from webhook.actions.apikey import parse_expiry, parse_roles
from webhook.app import Dependencies, api_key_policy, build_runtime, create_app, http_client, provisioning_worker
from webhook.audit.fill import fill
from webhook.audit.schema import inspect_schema
from webhook.audit.store import Filters, TopBy, as_dict, list_rows, prune, top
from webhook.auth.httpbounds import BoundedHttpToolsProtocol
from webhook.auth.jwksfetch import JwksFetcher
from webhook.auth.verifier import TokenRejected
from webhook.config import VARIABLES, ConfigError, Settings
from webhook.core.logouttoken import MAX_ID_CHARS
from webhook.core.realms import REALM_NAME_RE, parse_realm_name
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import choose_role
from webhook.db.datastore import DataStore
from webhook.db.engine import current_revision, head_revision, make_engine, make_sessionmaker, migrate
from webhook.observability.logs import configure, get_logger, terminal_text
from webhook.provisioning.apikeyclient import name_problem
from webhook.provisioning.apikeys import Actor, ApiKeyError, ApiKeyService, IssuedKey
from webhook.provisioning.jobs import job_as_dict, list_jobs, requeue
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin, KeycloakAdminError
from webhook.provisioning.reconciler import RealmReconciler
from webhook.provisioning.templates import PortalUrls, load_template, render, render_named
from webhook.revocation.active import Revocation
from webhook.revocation.store import active as revocation_active
from webhook.revocation.store import insert as revocation_insert

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load_settings(*, require_keycloak: bool = True) -> Settings:
    """Settings from the process environment, or exit 2 naming the bad variable."""
    try:
        return Settings.from_environ(os.environ, require_keycloak=require_keycloak)
    except ConfigError as exc:
        _fail(str(exc))


def app_from_environ() -> Any:
    """uvicorn factory (`webhook.cli:app_from_environ`) used by `serve`, in each worker process."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    tune_gc()
    return create_app(settings)


def tune_gc() -> None:
    """Keep the collector off the hot path of a long-running server.

    Everything imported so far (the libraries) is frozen out of collections, and young-generation
    collections run every 50,000 allocations instead of 700: a cold verification allocates a few
    hundred objects, and with 100,000 cached identities the default thresholds made full
    collections show up as p99 latency spikes.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 10)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="webhook")
def main() -> None:
    """Hasura auth webhook and actions for Keycloak multi-realm tenants."""


@main.command()
@click.option("--host", default=None, help="Bind address (default: $HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Bind port (default: $PORT or 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the service with the Keycloak configuration from the environment."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    uvicorn.run(
        "webhook.cli:app_from_environ",
        factory=True,
        host=host or settings.host,
        port=settings.port if port is None else port,
        workers=workers,
        http=BoundedHttpToolsProtocol,  # httptools with request heads capped (webhook/auth/httpbounds.py)
        loop="uvloop",
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_level="warning",
    )


@main.command("check-config")
def check_config() -> None:
    """Validate the environment's configuration and print it (exit 2 if invalid)."""
    settings = load_settings()
    click.echo(orjson.dumps(settings.describe(), option=orjson.OPT_INDENT_2).decode())
    click.echo("configuration OK", err=True)


@main.command("probe-jwks")
@click.argument("realm")
def probe_jwks(realm: str) -> None:
    """Fetch REALM's JWKS from KEYCLOAK_URL exactly as the service would and describe its keys."""
    settings = load_settings()
    sys.exit(asyncio.run(_probe(settings, realm)))


async def _probe(settings: Settings, realm_name: str) -> int:
    async with http_client(settings) as client:
        runtime = build_runtime(settings, client, Dependencies(http_client=client))
        realm = runtime.realms.realm_for_name(realm_name)
        if realm is None:
            _fail(f"{realm_name!r} is not a trusted realm name (tenant-<uuid>[-event-<uuid>] or TRUSTED_EXTRA_REALMS)")
        fetcher = JwksFetcher(client, runtime.realms, runtime.cache.policy, settings.algorithms)
        fetched = await fetcher.fetch(realm)
    click.echo(f"url:     {runtime.realms.jwks_url(realm)}")
    click.echo(f"outcome: {fetched.outcome}{' (' + fetched.error + ')' if fetched.error else ''}")
    if fetched.keys is None:
        return 1
    for key in fetched.keys.by_kid.values():
        algorithms = ",".join(sorted(key.algorithms))
        click.echo(f"key:     kid={terminal_text(key.kid)} kty={key.public_jwk['kty']} algorithms={algorithms}")
    click.echo(f"ignored: {fetched.keys.ignored} key(s) not usable for signatures (enc keys, other algorithms)")
    return 0 if fetched.keys.by_kid else 1


@main.command()
@click.option("--role", default=None, help="Simulate an X-Hasura-Role request header.")
def explain(role: str | None) -> None:
    """Read a token on stdin and tell what the hook would decide, and why (never prints the token)."""
    settings = load_settings()
    token = sys.stdin.read().strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    report = asyncio.run(_explain(settings, token, role))
    for name, value in report.items():
        click.echo(f"{name + ':':<12}{terminal_text(value)}")  # claimed values may hold escapes
    sys.exit(0 if report["decision"] == "allow" else 1)


async def _explain(settings: Settings, token: str, role: str | None) -> dict[str, Any]:
    async with http_client(settings) as client:
        runtime = build_runtime(settings, client, Dependencies(http_client=client))
        facts, realm = runtime.verifier.explain_parse(token)
        report: dict[str, Any] = {
            "decision": "allow",
            "reason": "-",
            "realm": realm.name if realm else "-",
            "issuer": facts.iss or "-",
            "kid": facts.kid or "-",
            "alg": facts.alg or "-",
            "sub": facts.sub or "-",
            "azp": facts.azp or "-",
            "typ": facts.typ or "-",
        }
        if facts.exp is not None:
            left = facts.exp - int(dt.datetime.now(dt.UTC).timestamp())
            when = dt.datetime.fromtimestamp(facts.exp, dt.UTC).isoformat()
            report["expiry"] = f"{when} ({'in ' + str(left) if left >= 0 else str(-left) + ' ago'} s)"
        try:
            identity = await runtime.verifier.verify(token)
            chosen = choose_role(identity, role)
        except TokenRejected as exc:
            report.update(decision="reject", reason=f"{exc.reason.value} ({exc.detail})")
        except Rejected as exc:
            report.update(decision="reject", reason=f"{exc.reason.value} ({exc.detail})")
        else:
            report.update(
                role=chosen,
                default_role=identity.default_role,
                roles=f"{len(identity.allowed_roles)} allowed",
                tenant=identity.tenant_id,
                event=identity.event_id or "-",
                user=identity.user_id,
            )
        await runtime.cache.close()
    return report


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port of the webhook.")
@click.option("--issuer-port", type=int, default=8090, show_default=True, help="Port of the dev issuer.")
@click.option("--state-dir", default="var/dev", show_default=True, help="Where the dev signing key is kept.")
def dev(host: str, port: int, issuer_port: int, state_dir: str) -> None:
    """Run with a built-in dev issuer on loopback (NOT FOR PRODUCTION)."""
    from webhook.dev import run_dev  # noqa: PLC0415 - pulls in the fakes only for this command

    try:
        asyncio.run(run_dev(host=host, port=port, issuer_port=issuer_port, state_dir=state_dir))
    except ConfigError as exc:
        _fail(str(exc))


def variables_markdown() -> str:
    """The README's configuration table, generated from `config.VARIABLES`."""
    lines = ["| variable | default | example | meaning |", "|---|---|---|---|"]
    for v in VARIABLES:
        lines.append(f"| `{v.name}` | `{v.default}` | `{v.example}` | {v.help} |")
    return "\n".join(lines)


# -- database and audit (issue 4) -------------------------------------------------------------


@main.group()
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
    current = asyncio.run(_with_engine(settings, current_revision))
    found = asyncio.run(_with_engine(settings, inspect_schema))
    click.echo(f"current: {current or '(none)'}\nhead:    {head_revision()}\nschema:  {found.state}")
    if found.advice:
        click.echo(f"advice:  {found.advice}")


async def _with_engine(settings: Settings, job: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `job` with an engine for the settings' database; exit 1 naming the database on error."""
    engine = make_engine(settings.database_url.reveal(), schema=settings.database_schema)
    try:
        return await job(engine)
    except Exception as exc:
        _fail(f"database {settings.database_url}: {type(exc).__name__}: {exc}", code=1)
    finally:
        await engine.dispose()


async def _migrate(settings: Settings, action: Literal["upgrade", "downgrade", "stamp"], revision: str) -> None:
    await _with_engine(settings, lambda engine: migrate(engine, action, revision, schema=settings.database_schema))


@main.group()
def audit() -> None:
    """Query and prune the rejected-token audit table (never shows tokens, only their SHA-256)."""


_SINCE_HELP = "Only rows last seen in this window: 30s, 15m, 2h, 7d, 2w, or an ISO 8601 time (UTC if naive)."
_FORMAT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)


def parse_since(value: str, now: dt.datetime) -> dt.datetime:
    """`15m`/`2h`/`7d`/`2w`/`30s` before `now`, or an ISO 8601 time; ValueError otherwise."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    text = value.strip()
    if len(text) >= 2 and text[-1] in units and text[:-1].isdigit():
        return now - dt.timedelta(**{units[text[-1]]: int(text[:-1])})
    when = dt.datetime.fromisoformat(text)
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


def _since_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value, dt.datetime.now(dt.UTC))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use 30s, 15m, 2h, 7d, 2w or an ISO 8601 time") from None


def _printable(value: object, width: int) -> str:
    """A cell: claimed values may hold terminal escapes, so non-printables become '?'."""
    text = "-" if value is None else str(value)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= width else text[: width - 1] + "~"


def _table(headers: list[tuple[str, int]], rows: Sequence[Sequence[object]]) -> str:
    lines = ["  ".join(f"{name:<{width}}" for name, width in headers).rstrip()]
    for row in rows:
        cells = (f"{_printable(v, w):<{w}}" for v, (_, w) in zip(row, headers, strict=True))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


async def _query(settings: Settings, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def run(engine: AsyncEngine) -> T:
        async with make_sessionmaker(engine)() as session:
            return await job(session)

    return await _with_engine(settings, run)


@audit.command("list")
@click.option("--since", callback=_since_option, help=_SINCE_HELP)
@click.option("--reason", type=click.Choice([r.value for r in Reason]), help="Only this reason code.")
@click.option("--realm", help="Only this realm.")
@click.option("--sub", help="Only this claimed subject.")
@click.option("--ip", help="Only this client IP (as forwarded, untrusted).")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@_FORMAT
def audit_list(
    *,
    since: dt.datetime | None,
    reason: str | None,
    realm: str | None,
    sub: str | None,
    ip: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Rejected tokens, most recently seen first (token hashes shortened to 12 characters in tables)."""
    settings = load_settings(require_keycloak=False)
    filters = Filters(since=since, reason=reason, realm=realm, sub=sub, ip=ip)
    rows = asyncio.run(_query(settings, lambda session: list_rows(session, filters, limit)))
    if fmt == "json":
        click.echo(orjson.dumps([as_dict(r) for r in rows], option=orjson.OPT_INDENT_2).decode())
        return
    headers = [
        ("last_seen", 20),
        ("reason", 20),
        ("count", 7),
        ("realm", 28),
        ("sub", 24),
        ("client_ip", 16),
        ("token", 12),
        ("iss", 40),
    ]
    table = [
        [
            r.last_seen.strftime("%Y-%m-%dT%H:%M:%SZ"),
            r.reason,
            r.occurrences,
            r.realm,
            r.sub,
            r.client_ip_untrusted,
            r.token_sha256[:12] if r.token_sha256 else None,
            r.iss,
        ]
        for r in rows
    ]
    click.echo(_table(headers, table))


@audit.command("top")
@click.option("--by", type=click.Choice(["reason", "realm", "ip", "sub"]), default="reason", show_default=True)
@click.option("--since", callback=_since_option, help=_SINCE_HELP)
@click.option("--limit", type=click.IntRange(1, 10000), default=10, show_default=True)
@_FORMAT
def audit_top(*, by: TopBy, since: dt.datetime | None, limit: int, fmt: str) -> None:
    """The reasons, realms, client IPs or subjects with the most rejections (rows last seen in --since)."""
    settings = load_settings(require_keycloak=False)
    entries = asyncio.run(_query(settings, lambda session: top(session, by, Filters(since=since), limit)))
    if fmt == "json":
        payload = [
            {"value": e.value, "occurrences": e.occurrences, "rows": e.rows, "last_seen": e.last_seen.isoformat()}
            for e in entries
        ]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    headers = [(by, 40), ("occurrences", 12), ("rows", 8), ("last_seen", 20)]
    table = [[e.value, e.occurrences, e.rows, e.last_seen.strftime("%Y-%m-%dT%H:%M:%SZ")] for e in entries]
    click.echo(_table(headers, table))


@audit.command("prune")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=1),
    default=None,
    help="Delete rows last seen more than this many days ago (default: AUDIT_RETENTION_DAYS).",
)
def audit_prune(*, days: int | None) -> None:
    """Delete audit rows older than the retention."""
    settings = load_settings(require_keycloak=False)
    days = days if days is not None else settings.audit_retention_days
    if days <= 0:
        _fail("AUDIT_RETENTION_DAYS is 0 (keep forever): pass --older-than DAYS")
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    deleted = asyncio.run(_with_engine(settings, lambda engine: prune(engine, cutoff)))
    click.echo(f"deleted {deleted} row(s) last seen before {cutoff.isoformat()}")


@audit.command("fill")
@click.option("--rows", type=click.IntRange(min=1, max=100_000_000), required=True, help="Rows to insert.")
@click.option("--days", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="Spread of last_seen.")
def audit_fill(*, rows: int, days: float) -> None:
    """Pre-fill the audit table with synthetic rows (benchmarks; generated by the database itself)."""
    settings = load_settings(require_keycloak=False)

    def report(done: int) -> None:
        click.echo(f"  {done}/{rows}", err=True)

    inserted = asyncio.run(_with_engine(settings, lambda engine: fill(engine, rows, days=days, progress=report)))
    click.echo(f"inserted {inserted} row(s) into rejected_token: {settings.database_url}")


# -- realm provisioning (issue 5) -------------------------------------------------------------


@main.command()
@click.option("--once", is_flag=True, help="Attempt the jobs due now, then exit (status 1 if any failed).")
def worker(once: bool) -> None:
    """Run the realm provisioning worker alone (without the HTTP service), until SIGINT/SIGTERM."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    if settings.keycloak_admin_client_secret is None:
        _fail("the worker needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
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


@main.group()
def provisioning() -> None:
    """Realm provisioning jobs (the outbox the actions write): status, retry, check drift, secret, render."""


@provisioning.command("status")
@click.option("--realm", help="Only this realm.")
@click.option(
    "--status", "status_", type=click.Choice(["pending", "running", "done", "failed"]), help="Only this status."
)
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@_FORMAT
def provisioning_status(*, realm: str | None, status_: str | None, limit: int, fmt: str) -> None:
    """Provisioning jobs, most recently updated first (exit 1 if --realm names no job)."""
    settings = load_settings(require_keycloak=False)
    jobs = asyncio.run(_query(settings, lambda session: list_jobs(session, realm=realm, status=status_, limit=limit)))
    rows = [job_as_dict(job) for job in jobs]
    if fmt == "json":
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
    else:
        headers = [("realm", 86), ("status", 8), ("attempts", 8), ("next_attempt_at", 20), ("last_error", 120)]
        table = [[r["realm"], r["status"], r["attempts"], r["next_attempt_at"][:19], r["last_error"]] for r in rows]
        click.echo(_table(headers, table))
    if realm is not None and not rows:
        sys.exit(1)


@provisioning.command("retry")
@click.argument("realm")
def provisioning_retry(realm: str) -> None:
    """Make REALM's failed (or done) job pending again, due now: the worker re-converges the realm."""
    settings = load_settings(require_keycloak=False)
    now = dt.datetime.now(dt.UTC)
    done = asyncio.run(_with_store(settings, lambda store: requeue(store, realm, now)))
    if not done:
        _fail(f"no failed or done job for realm {realm!r}", code=1)
    click.echo(f"{realm}: pending again")


def _admin(settings: Settings, client: Any) -> KeycloakAdmin:
    secret = settings.keycloak_admin_client_secret
    if secret is None:
        _fail("this command needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
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
        _fail("give --realm R (one or more) or --all")
    settings = load_settings()
    names = list(realms)
    if every:
        jobs = asyncio.run(_query(settings, lambda session: list_jobs(session, limit=1_000_000)))
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
                _fail(f"realm {realm} has no client {client_id}", code=1)
            secret = await admin.client_secret(realm, str(found[0]["id"]))
        except KeycloakAdminError as exc:
            _fail(str(exc), code=1)
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
        _fail("--tenant and --event must be UUIDs")
    kind: Literal["tenant", "event"] = "event" if event_id else "tenant"
    urls = PortalUrls(
        voting_portal=settings.voting_portal_url,
        admin_portal=settings.admin_portal_url,
        backchannel_logout=settings.backchannel_logout_url,
    )
    realm = render(load_template(kind), kind, tenant_id=tenant_id, event_id=event_id, urls=urls)
    click.echo(orjson.dumps(realm, option=orjson.OPT_INDENT_2).decode())


@main.group()
def sessions() -> None:
    """Session revocations (back-channel logout): revoke a session or a user by hand, list active ones."""


@sessions.command("revoke")
@click.option("--realm", required=True, help="Realm of the session or user.")
@click.option("--sid", default=None, help="Keycloak session id: every token of this session is refused.")
@click.option("--user", "sub", default=None, help="User id (sub): every token of the user issued until now.")
def sessions_revoke(realm: str, sid: str | None, sub: str | None) -> None:
    """Revoke one session or every current session of a user, on every replica within a second."""
    if (sid is None) == (sub is None):
        _fail("give exactly one of --sid and --user")
    if not REALM_NAME_RE.fullmatch(realm):
        _fail(f"--realm: {realm!r} is not a valid realm name")
    for name, value in (("--sid", sid), ("--user", sub)):
        if value is not None and not 0 < len(value) <= MAX_ID_CHARS:
            _fail(f"{name}: 1..{MAX_ID_CHARS} characters")
    settings = load_settings(require_keycloak=False)
    now = time.time()
    revocation = Revocation(
        realm=realm,
        sid=sid,
        sub=sub,
        before=now,
        expires_at=now + settings.revocation_max_token_lifetime + settings.leeway,
        created_at=now,
    )

    async def store_it(store: DataStore) -> bool:
        async with store.transaction() as session:
            return await revocation_insert(session, revocation, source="operator", jti=None)

    asyncio.run(_with_store(settings, store_it))
    what = f"session {sid}" if sid is not None else f"user {sub} (tokens issued until now)"
    click.echo(
        f"{realm}: revoked {what} until {dt.datetime.fromtimestamp(revocation.expires_at, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    )


@sessions.command("list")
@click.option("--realm", required=True, help="Only this realm.")
@_FORMAT
def sessions_list(realm: str, fmt: str) -> None:
    """Active revocations of REALM, oldest first."""
    settings = load_settings(require_keycloak=False)
    rows = asyncio.run(_query(settings, lambda session: revocation_active(session, time.time(), realm=realm)))
    items = [
        {
            "realm": row.realm,
            "sid": row.sid,
            "sub": row.sub,
            "before": row.before.isoformat(),
            "expires_at": row.expires_at.isoformat(),
            "created_at": row.created_at.isoformat(),
            "source": row.source,
        }
        for row in rows
    ]
    if fmt == "json":
        click.echo(orjson.dumps(items, option=orjson.OPT_INDENT_2).decode())
        return
    headers = [("sid", 38), ("sub", 38), ("before", 20), ("expires_at", 20), ("source", 11)]
    table = [
        [i["sid"] or "-", i["sub"] or "-", str(i["before"])[:19], str(i["expires_at"])[:19], i["source"]] for i in items
    ]
    click.echo(_table(headers, table))


async def _with_store(settings: Settings, job: Callable[[DataStore], Awaitable[T]]) -> T:
    """Run `job` with a `DataStore` on the settings' database; exit 1 naming the database on error."""
    store = DataStore.from_settings(settings)
    try:
        return await job(store)
    except Exception as exc:
        _fail(f"database {settings.database_url}: {type(exc).__name__}: {exc}", code=1)
    finally:
        await store.dispose()


# -- API keys (issue 16) ------------------------------------------------------------------------------


@main.group("api-keys")
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
                    _fail("API keys need KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
                return await job(service)
        except (ApiKeyError, KeycloakAdminError) as exc:
            _fail(str(exc), code=1)
        except SQLAlchemyError as exc:
            _fail(f"database {settings.database_url}: {type(exc).__name__} (run `webhook db upgrade`?)", code=1)
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
        _fail("--tenant must be a UUID")
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
@_FORMAT
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
        _fail("; ".join(f"{field}: {problem}" for field, problem in sorted(problems.items())))
    issued = _api_key_run(settings, lambda service: service.create(tenant, name, wanted, expiry, _cli_actor()))
    _print_issued(issued, fmt)


@api_keys.command("list")
@_TENANT
@_FORMAT
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
    click.echo(_table(headers, rows))


@api_keys.command("rotate")
@_TENANT
@_KEY
@_FORMAT
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
