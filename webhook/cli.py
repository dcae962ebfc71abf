"""The `webhook` command: a thin click layer over plain functions (uvicorn's CLI shape).

Commands: serve, dev, check-config, probe-jwks REALM, explain. Each reads the settings once; a
bad setting exits with status 2 and a message naming the variable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from typing import Any, NoReturn

import click
import orjson
import uvicorn

from webhook import __version__
from webhook.app import Dependencies, build_runtime, create_app, http_client
from webhook.config import VARIABLES, ConfigError, Settings
from webhook.jwks import JwksFetcher
from webhook.logs import configure
from webhook.reasons import Rejected
from webhook.session import choose_role
from webhook.verifier import TokenRejected


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
    """uvicorn factory (`webhook.cli:app_from_environ`) used by `serve --workers N`."""
    settings = load_settings()
    configure(settings.log_level, settings.log_format)
    return create_app(settings)


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
        http="httptools",
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
            _fail(
                f"{realm_name!r} is not a trusted realm name (tenant-<uuid>[-event-<uuid>] or TRUSTED_EXTRA_REALMS)"
            )
        fetcher = JwksFetcher(client, runtime.realms, runtime.cache.policy, settings.algorithms)
        fetched = await fetcher.fetch(realm)
    click.echo(f"url:     {runtime.realms.jwks_url(realm)}")
    click.echo(f"outcome: {fetched.outcome}{' (' + fetched.error + ')' if fetched.error else ''}")
    if fetched.keys is None:
        return 1
    for key in fetched.keys.by_kid.values():
        click.echo(
            f"key:     kid={key.kid} kty={key.public_jwk['kty']} algorithms={','.join(sorted(key.algorithms))}"
        )
    click.echo(
        f"ignored: {fetched.keys.ignored} key(s) not usable for signatures (enc keys, other algorithms)"
    )
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
        click.echo(f"{name + ':':<12}{value}")
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
