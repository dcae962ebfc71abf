"""The compose stack's demo realm in the real Keycloak: its tokens through our hook and the Hasura stand-in.

The realm file is imported with ``POST /admin/realms`` (tests/keycloak/conftest.py), which runs
``RealmManager.importRealm``, the same import ``start-dev --import-realm`` runs at startup; a startup
import would cost a second server start for nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.keycloak.conftest import DemoRealm
from tests.keycloak.support import (
    HookStack,
    Mode,
    claims_of,
    cli_environment,
    header_of,
    hook_stack,
    leaks,
    token_response,
)
from webhook.cli import main

pytestmark = [pytest.mark.keycloak, pytest.mark.anyio]

SECRET = "dev-api-key-client-secret"
DEMO_SERVICE_ACCOUNT = "service-account-api-key-client"


@pytest.fixture
async def hook(demo_realm: DemoRealm, tmp_path: Path) -> AsyncIterator[HookStack]:
    # as the compose stack configures it: the demo tenant is the super-admin tenant
    async with hook_stack(
        demo_realm.server.url, tmp_path, PREFETCH_REALMS=demo_realm.name, SUPER_ADMIN_TENANT_ID=demo_realm.tenant_id
    ) as stack:
        yield stack


async def _password_grant(demo_realm: DemoRealm, client: httpx.AsyncClient) -> dict[str, Any]:
    return await token_response(
        client,
        demo_realm.server.url,
        demo_realm.name,
        grant_type="password",
        scope="openid",
        client_id="api-key-client",
        client_secret=SECRET,
        username="admin",
        password="admin",
    )


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_password_grant_of_the_demo_admin_opens_its_session(
    demo_realm: DemoRealm, hook: HookStack, mode: Mode
) -> None:
    """README's password grant (api-key-client, admin/admin): Hasura gets admin-user, the admin's id and the tenant,
    and may pick a permission role the admin holds; the real token has sid but no session_state and no aud."""
    answer = await _password_grant(demo_realm, hook.client)
    access = answer["access_token"]
    verdict = await hook.decide(access, mode)
    assert verdict.outcome == "session", verdict.hook_body
    assert verdict.session == {
        "x-hasura-role": "admin-user",
        "x-hasura-user-id": demo_realm.user_id("admin"),
        "x-hasura-tenant-id": demo_realm.tenant_id,
    }
    assert verdict.expires_in is not None and 0 < verdict.expires_in <= 300
    chosen = await hook.decide(access, mode, role="tenant-create")
    assert chosen.role == "tenant-create"
    claims = claims_of(access)
    assert set(header_of(access)) == {"alg", "typ", "kid"}
    assert "session_state" not in claims and "sid" in claims and "session_state" in answer
    assert "aud" not in claims, "an imported user gets no default roles, so no account audience"
    assert set(claims["scope"].split()) == {"openid", "profile", "email"}


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_client_credentials_of_api_key_client_opens_the_service_account_session(
    demo_realm: DemoRealm, hook: HookStack, mode: Mode
) -> None:
    """The client-credentials grant of api-key-client: the service account's session (admin-user, its own id);
    the token has no sid and its scope lacks openid."""
    answer = await token_response(
        hook.client,
        demo_realm.server.url,
        demo_realm.name,
        grant_type="client_credentials",
        client_id="api-key-client",
        client_secret=SECRET,
    )
    verdict = await hook.decide(answer["access_token"], mode)
    assert verdict.outcome == "session", verdict.hook_body
    assert verdict.session == {
        "x-hasura-role": "admin-user",
        "x-hasura-user-id": demo_realm.user_id(DEMO_SERVICE_ACCOUNT),
        "x-hasura-tenant-id": demo_realm.tenant_id,
    }
    claims = claims_of(answer["access_token"])
    assert "sid" not in claims and "session_state" not in claims
    assert set(claims["scope"].split()) == {"profile", "email"}
    assert "refresh_token" not in answer and "id_token" not in answer


@pytest.mark.parametrize("mode", ["GET", "POST"])
async def test_id_and_refresh_tokens_of_the_same_answer_are_refused(
    demo_realm: DemoRealm, hook: HookStack, mode: Mode
) -> None:
    """The ID token (RS256, typ ID) is wrong_token_type; the refresh token is HS512 (typ Refresh), refused
    before its payload is even read (alg_not_allowed): neither opens a session, and neither is logged."""
    answer = await _password_grant(demo_realm, hook.client)
    id_verdict = await hook.decide(answer["id_token"], mode)
    refresh_verdict = await hook.decide(answer["refresh_token"], mode)
    assert (id_verdict.hook_status, id_verdict.outcome) == (401, "access-denied")
    assert b'"wrong_token_type"' in id_verdict.hook_body
    assert claims_of(answer["refresh_token"])["typ"] == "Refresh"
    assert header_of(answer["refresh_token"])["alg"] == "HS512"
    assert (refresh_verdict.hook_status, refresh_verdict.outcome) == (401, "access-denied")
    assert b'"alg_not_allowed"' in refresh_verdict.hook_body
    logged = hook.log_text()
    for token in (answer["id_token"], answer["refresh_token"]):
        assert not leaks(token, logged)


def test_explain_and_probe_jwks_on_the_real_token_and_realm(demo_realm: DemoRealm, tmp_path: Path) -> None:
    """`webhook probe-jwks` lists the realm's one RS256 signing key (the enc key ignored) and `webhook explain`
    allows the real access token with its kid and realm, printing no part of the token."""
    answer = httpx.post(
        f"{demo_realm.server.url}/realms/{demo_realm.name}/protocol/openid-connect/token",
        data={
            "grant_type": "password",
            "scope": "openid",
            "client_id": "api-key-client",
            "client_secret": SECRET,
            "username": "admin",
            "password": "admin",
        },
        timeout=30,
    ).json()
    access = answer["access_token"]
    env = cli_environment(demo_realm.server.url, tmp_path)
    probe = CliRunner().invoke(main, ["probe-jwks", demo_realm.name], env=env)
    assert probe.exit_code == 0, probe.output
    kid = header_of(access)["kid"]
    assert "outcome: ok" in probe.output
    assert f"key:     kid={kid} kty=RSA algorithms=RS256" in probe.output
    assert "ignored: 1 key(s)" in probe.output
    explained = CliRunner().invoke(main, ["explain"], input=access, env=env)
    assert explained.exit_code == 0, explained.output
    assert "decision:   allow" in explained.output
    assert f"realm:      {demo_realm.name}" in explained.output
    assert f"kid:        {kid}" in explained.output
    assert "role:       admin-user" in explained.output
    assert not leaks(access, explained.output)
    refused = CliRunner().invoke(main, ["explain"], input=answer["id_token"], env=env)
    assert refused.exit_code == 1 and "wrong_token_type" in refused.output
