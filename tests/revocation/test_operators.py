"""What operators get: the `webhook sessions` commands against a running replica, and the realm
templates carrying the back-channel logout URL."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import orjson
import pytest
from click.testing import CliRunner, Result

from tests.revocation.conftest import LogoutStackFactory
from webhook.cli import main
from webhook.provisioning.templates import PortalUrls, load_template, render

T = "5b0c9d8e-7f6a-4b5c-8d9e-0f1a2b3c4d5e"
E = "6c1d0e9f-8a7b-4c6d-9e0f-1a2b3c4d5e6f"


@pytest.mark.anyio
async def test_sessions_revoke_reaches_a_running_replica_and_sessions_list_shows_it(
    make_logout_stack: LogoutStackFactory, db_env: dict[str, str]
) -> None:
    """`webhook sessions revoke --sid` and `--user` end those sessions on a running replica within a
    second (another user's session keeps working); `sessions list --format json` lists both."""
    async with make_logout_stack() as stack:
        realm, sid, sub = stack.tenant.name, str(uuid.uuid4()), str(uuid.uuid4())
        by_sid = stack.keycloak.mint(realm, claims={"sid": sid})
        by_user = stack.keycloak.mint(realm, sub=sub, now=int(time.time()) - 5)
        bystander = stack.keycloak.mint(realm)
        env = {**db_env, "KEYCLOAK_URL": stack.keycloak.url}

        def cli(*args: str) -> Result:
            return CliRunner().invoke(main, ["sessions", *args], env=env)

        for target in (["--sid", sid], ["--user", sub]):
            result = await anyio.to_thread.run_sync(cli, "revoke", "--realm", realm, *target)
            assert result.exit_code == 0, result.output
        with anyio.fail_after(1.0):
            await stack.first.revocations.wait_until(lambda held: len(held) >= 2)
        assert (await stack.hook(by_sid))[1].get("reason") == "session_revoked"
        assert (await stack.hook(by_user))[1].get("reason") == "session_revoked"
        assert (await stack.hook(bystander))[0] == 200
        listed = await anyio.to_thread.run_sync(cli, "list", "--realm", realm, "--format", "json")
        rows: list[dict[str, Any]] = orjson.loads(listed.output)
        assert {(r["sid"], r["sub"], r["source"]) for r in rows} == {(sid, None, "operator"), (None, sub, "operator")}


def test_sessions_revoke_needs_exactly_one_target() -> None:
    """Neither or both of --sid and --user is a usage error (exit 2), nothing written."""
    runner = CliRunner()
    for extra in ([], ["--sid", "a", "--user", "b"]):
        result = runner.invoke(main, ["sessions", "revoke", "--realm", f"tenant-{T}", *extra])
        assert result.exit_code == 2
        assert "exactly one of --sid and --user" in result.output


@pytest.mark.parametrize("kind", ["tenant", "event"])
def test_portal_clients_get_the_backchannel_logout_url_with_session_required(kind: Any) -> None:
    """With BACKCHANNEL_LOGOUT_URL the portals (not the API client) carry Keycloak's back-channel attributes
    and front-channel logout off (Keycloak sends nothing back-channel while it is on); without it none are
    written."""
    url = "http://webhook:8080/keycloak/backchannel-logout"
    event = E if kind == "event" else None
    realm = render(load_template(kind), kind, tenant_id=T, event_id=event, urls=PortalUrls(backchannel_logout=url))
    clients = {c["clientId"]: c.get("attributes", {}) for c in realm["clients"]}
    assert all(c["frontchannelLogout"] is False for c in realm["clients"] if c["clientId"] != "api-key-client")
    for portal in ("admin-portal", "voting-portal"):
        assert clients[portal]["backchannel.logout.url"] == url
        assert clients[portal]["backchannel.logout.session.required"] == "true"
        assert clients[portal]["backchannel.logout.revoke.offline.tokens"] == "false"
    assert "backchannel.logout.url" not in clients["api-key-client"]
    plain = render(load_template(kind), kind, tenant_id=T, event_id=event)
    assert all("backchannel.logout.url" not in c.get("attributes", {}) for c in plain["clients"])
