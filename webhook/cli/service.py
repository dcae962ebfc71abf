"""The service commands: serve (and its uvicorn factory), dev, check-config, probe-jwks, explain.

Rules of this module:
- `serve` hands uvicorn the factory `webhook.cli.service:app_from_environ`, run in each worker
  process: settings, logging and `tune_gc()` are set up there, not in the parent.
- `probe-jwks` and `explain` build the runtime exactly as the service does (`app.build_runtime`) so
  what they report is what the hook would do; `explain` never prints the token, and every value a
  token claims goes through `terminal_text` before it reaches the terminal.
- `dev` imports the dev mode (and with it the fakes) only when it runs.
- `check-config` prints `Settings.describe()` (secrets masked); `variables_markdown()` is the
  README's configuration table (scripts/update-readme.py), both from `settings`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
from typing import Any

import click
import orjson
import uvicorn

from webhook.app import create_app
from webhook.auth.httpbounds import BoundedHttpToolsProtocol
from webhook.auth.jwksfetch import JwksFetcher
from webhook.auth.verifier import TokenRejected
from webhook.cli.common import fail, load_settings
from webhook.core.reasons import Rejected
from webhook.core.session import choose_role
from webhook.observability.logs import configure, terminal_text
from webhook.settings import VARIABLES, ConfigError, Settings
from webhook.wiring import Dependencies, build_runtime, http_client


def app_from_environ() -> Any:
    """uvicorn factory (`webhook.cli.service:app_from_environ`) used by `serve`, in each worker process."""
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


@click.command()
@click.option("--host", default=None, help="Bind address (default: $HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Bind port (default: $PORT or 8080).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Run the service with the Keycloak configuration from the environment."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    uvicorn.run(
        "webhook.cli.service:app_from_environ",
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


@click.command("check-config")
def check_config() -> None:
    """Validate the environment's configuration and print it (exit 2 if invalid)."""
    settings = load_settings()
    click.echo(orjson.dumps(settings.describe(), option=orjson.OPT_INDENT_2).decode())
    click.echo("configuration OK", err=True)


@click.command("probe-jwks")
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
            fail(f"{realm_name!r} is not a trusted realm name (tenant-<uuid>[-event-<uuid>] or TRUSTED_EXTRA_REALMS)")
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


@click.command()
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


@click.command()
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
        fail(str(exc))


def variables_markdown() -> str:
    """The README's configuration table, generated from `settings.VARIABLES`."""
    lines = ["| variable | default | example | meaning |", "|---|---|---|---|"]
    for v in VARIABLES:
        lines.append(f"| `{v.name}` | `{v.default}` | `{v.example}` | {v.help} |")
    return "\n".join(lines)
