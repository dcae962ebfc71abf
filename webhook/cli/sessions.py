"""`webhook sessions`: revoke a session or a user by hand, list a realm's active revocations.

Rules of this module:
- Arguments are checked before anything is written: a valid realm name, and `sid`/`sub` of
  1..MAX_ID_CHARS characters (the bound a logout token has, `core.logouttoken`).
- A revocation is written with source `operator` and reaches every replica through the revocation
  store (NOTIFY on PostgreSQL); it lasts the longest token lifetime plus the leeway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import click
import orjson

from webhook.cli.common import fail, format_option, format_table, load_settings, with_session, with_store
from webhook.core.logouttoken import MAX_ID_CHARS
from webhook.core.realms import REALM_NAME_RE
from webhook.db.datastore import DataStore
from webhook.revocation.active import Revocation
from webhook.revocation.store import active as revocation_active
from webhook.revocation.store import insert as revocation_insert


@click.group()
def sessions() -> None:
    """Session revocations (back-channel logout): revoke a session or a user by hand, list active ones."""


@sessions.command("revoke")
@click.option("--realm", required=True, help="Realm of the session or user.")
@click.option("--sid", default=None, help="Keycloak session id: every token of this session is refused.")
@click.option("--user", "sub", default=None, help="User id (sub): every token of the user issued until now.")
def sessions_revoke(realm: str, sid: str | None, sub: str | None) -> None:
    """Revoke one session or every current session of a user, on every replica within a second."""
    if (sid is None) == (sub is None):
        fail("give exactly one of --sid and --user")
    if not REALM_NAME_RE.fullmatch(realm):
        fail(f"--realm: {realm!r} is not a valid realm name")
    for name, value in (("--sid", sid), ("--user", sub)):
        if value is not None and not 0 < len(value) <= MAX_ID_CHARS:
            fail(f"{name}: 1..{MAX_ID_CHARS} characters")
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

    asyncio.run(with_store(settings, store_it))
    what = f"session {sid}" if sid is not None else f"user {sub} (tokens issued until now)"
    click.echo(
        f"{realm}: revoked {what} until {dt.datetime.fromtimestamp(revocation.expires_at, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"
    )


@sessions.command("list")
@click.option("--realm", required=True, help="Only this realm.")
@format_option
def sessions_list(realm: str, fmt: str) -> None:
    """Active revocations of REALM, oldest first."""
    settings = load_settings(require_keycloak=False)
    rows = asyncio.run(with_session(settings, lambda session: revocation_active(session, time.time(), realm=realm)))
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
    click.echo(format_table(headers, table))
