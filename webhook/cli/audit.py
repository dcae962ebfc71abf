"""`webhook audit`: query, prune and pre-fill the rejected-token audit table.

Rules of this module:
- Never shows a token, only its SHA-256 (shortened to 12 characters in tables); claimed values
  are printed through `format_table`, which neutralises terminal escapes.
- `--since` takes 30s/15m/2h/7d/2w or an ISO 8601 time (`parse_since`, UTC when naive).
- Only the database settings are needed (no Keycloak).
"""

from __future__ import annotations

import asyncio
import datetime as dt

import click
import orjson

from webhook.audit.fill import fill
from webhook.audit.store import Filters, TopBy, as_dict, list_rows, prune, top
from webhook.cli.common import fail, format_option, format_table, load_settings, with_engine, with_session
from webhook.core.reasons import Reason


@click.group()
def audit() -> None:
    """Query and prune the rejected-token audit table (never shows tokens, only their SHA-256)."""


_SINCE_HELP = "Only rows last seen in this window: 30s, 15m, 2h, 7d, 2w, or an ISO 8601 time (UTC if naive)."


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


@audit.command("list")
@click.option("--since", callback=_since_option, help=_SINCE_HELP)
@click.option("--reason", type=click.Choice([r.value for r in Reason]), help="Only this reason code.")
@click.option("--realm", help="Only this realm.")
@click.option("--sub", help="Only this claimed subject.")
@click.option("--ip", help="Only this client IP (as forwarded, untrusted).")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@format_option
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
    rows = asyncio.run(with_session(settings, lambda session: list_rows(session, filters, limit)))
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
    click.echo(format_table(headers, table))


@audit.command("top")
@click.option("--by", type=click.Choice(["reason", "realm", "ip", "sub"]), default="reason", show_default=True)
@click.option("--since", callback=_since_option, help=_SINCE_HELP)
@click.option("--limit", type=click.IntRange(1, 10000), default=10, show_default=True)
@format_option
def audit_top(*, by: TopBy, since: dt.datetime | None, limit: int, fmt: str) -> None:
    """The reasons, realms, client IPs or subjects with the most rejections (rows last seen in --since)."""
    settings = load_settings(require_keycloak=False)
    entries = asyncio.run(with_session(settings, lambda session: top(session, by, Filters(since=since), limit)))
    if fmt == "json":
        payload = [
            {"value": e.value, "occurrences": e.occurrences, "rows": e.rows, "last_seen": e.last_seen.isoformat()}
            for e in entries
        ]
        click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())
        return
    headers = [(by, 40), ("occurrences", 12), ("rows", 8), ("last_seen", 20)]
    table = [[e.value, e.occurrences, e.rows, e.last_seen.strftime("%Y-%m-%dT%H:%M:%SZ")] for e in entries]
    click.echo(format_table(headers, table))


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
        fail("AUDIT_RETENTION_DAYS is 0 (keep forever): pass --older-than DAYS")
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    deleted = asyncio.run(with_engine(settings, lambda engine: prune(engine, cutoff)))
    click.echo(f"deleted {deleted} row(s) last seen before {cutoff.isoformat()}")


@audit.command("fill")
@click.option("--rows", type=click.IntRange(min=1, max=100_000_000), required=True, help="Rows to insert.")
@click.option("--days", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="Spread of last_seen.")
def audit_fill(*, rows: int, days: float) -> None:
    """Pre-fill the audit table with synthetic rows (benchmarks; generated by the database itself)."""
    settings = load_settings(require_keycloak=False)

    def report(done: int) -> None:
        click.echo(f"  {done}/{rows}", err=True)

    inserted = asyncio.run(with_engine(settings, lambda engine: fill(engine, rows, days=days, progress=report)))
    click.echo(f"inserted {inserted} row(s) into rejected_token: {settings.database_url}")
