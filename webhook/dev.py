"""Dev mode: the service plus a built-in dev issuer on loopback, so a newcomer sees it work.

Rules of this module:
- Only `webhook dev` reaches this code, and it refuses any non-loopback address: the dev issuer
  mints tokens for anyone who asks, so it must never be reachable from another machine.
- The dev realm's signing key is generated once and kept in `<state-dir>/dev-signing-key.pem`
  (mode 0600), so tokens printed yesterday still verify today.
- The dev issuer is the same fake Keycloak the tests use, serving the realm's JWKS exactly where
  Keycloak would (`/realms/tenant-<id>/protocol/openid-connect/certs`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import uuid
from pathlib import Path

import click
import orjson

from webhook.app import create_app
from webhook.observability.logs import configure, get_logger
from webhook.settings import ConfigError, Settings
from webhook.testing.keycloak import FakeKeycloak
from webhook.testing.server import serve_asgi

DEV_USER = "00000000-0000-4000-8000-00000000de70"


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dev_state(state_dir: Path) -> tuple[str, bytes | None]:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    realm_file = state_dir / "dev-realm.json"
    if realm_file.exists():
        tenant_id = str(uuid.UUID(orjson.loads(realm_file.read_bytes())["tenant_id"]))
    else:
        tenant_id = str(uuid.uuid4())
        realm_file.write_bytes(orjson.dumps({"tenant_id": tenant_id}))
    key_file = state_dir / "dev-signing-key.pem"
    return tenant_id, key_file.read_bytes() if key_file.exists() else None


async def run_dev(*, host: str, port: int, issuer_port: int, state_dir: str) -> None:
    """Start the dev issuer and the service; print a token and a curl line; serve until Ctrl-C."""
    if not is_loopback(host):
        raise ConfigError(f"dev mode binds loopback only (127.0.0.1, ::1, localhost), not {host!r}")
    state = Path(state_dir)
    tenant_id, pem = _dev_state(state)
    async with FakeKeycloak.start(host="127.0.0.1", port=issuer_port) as issuer:
        realm = issuer.add_realm(f"tenant-{tenant_id}", signing_key_pem=pem)
        if pem is None:
            key_file = state / "dev-signing-key.pem"
            key_file.write_bytes(realm.signing_key_pem())
            key_file.chmod(0o600)
        environ = {
            **os.environ,
            "KEYCLOAK_URL": issuer.url,
            "KEYCLOAK_ISSUER_URL": issuer.url,
            "PREFETCH_REALMS": realm.name,
        }
        settings = Settings.from_environ(environ).model_copy(update={"dev_mode": True, "host": host, "port": port})
        configure(settings.log_level, settings.log_format)
        get_logger("dev").warning(
            "dev.mode",
            message="DEV MODE: built-in dev issuer mints tokens for anyone on this machine. NOT FOR PRODUCTION.",
            issuer=issuer.url,
            realm=realm.name,
        )
        async with serve_asgi(create_app(settings), host=host, port=port, lifespan="on") as running:
            token = issuer.mint(realm.name, sub=DEV_USER, lifetime=8 * 3600)
            url = f"{running.url}/hasura/auth"
            click.echo(
                "\n".join(
                    [
                        "",
                        "=== DEV MODE: NOT FOR PRODUCTION ===",
                        f"dev issuer (fake Keycloak): {issuer.url}/realms/{realm.name}",
                        f"auth hook:                  {url}",
                        "a dev token (valid 8 h) is in $TOKEN after:",
                        f"  export TOKEN='{token}'",
                        "then:",
                        f'  curl -s -H "Authorization: Bearer $TOKEN" {url}',
                        "ready; Ctrl-C stops.",
                        "",
                    ]
                ),
                err=True,
            )
            await asyncio.Event().wait()  # serve until interrupted
