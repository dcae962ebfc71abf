"""Every realm template the service ships, rendered as the provisioning worker renders it and imported into the
real Keycloak: users made through the admin API get, in each client, tokens that open the sessions the README
promises (admin-user for a tenant's administrators, user for voters, x-hasura-event-id in event realms).

The portals log in the browser way (authorization code + PKCE through Keycloak's own login form);
admin-portal also takes the platform tutorial's password grant, voting-portal refuses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.keycloak.support import (
    PASSWORD,
    HookStack,
    KeycloakAdmin,
    ProvisionedRealm,
    browser_login,
    claims_of,
    provision,
    token_response,
)
from webhook.testing.realkeycloak import RealKeycloak

pytestmark = [pytest.mark.keycloak, pytest.mark.anyio]


@pytest.fixture(scope="module", params=["tenant", "event"])
async def realm(request: pytest.FixtureRequest, real_keycloak: RealKeycloak) -> AsyncIterator[ProvisionedRealm]:
    """One realm per template for this module (an import costs seconds), deleted at the end."""
    async with httpx.AsyncClient(timeout=60) as client:
        admin = KeycloakAdmin(real_keycloak.url, client)
        provisioned = await provision(admin, request.param)
        yield provisioned
        await admin.delete_realm(provisioned.name)


async def test_portals_log_in_with_authorization_code_and_pkce(
    real_keycloak: RealKeycloak, realm: ProvisionedRealm, real_hook: HookStack
) -> None:
    """admin-portal (an administrator) and voting-portal (a voter), each through the login form with PKCE:
    admin-user and user sessions of the realm's tenant (and event); a voter cannot ask for admin-user."""
    portals = {"admin-portal": realm.urls.admin_portal, "voting-portal": realm.urls.voting_portal}

    async def login(client_id: str, username: str) -> dict[str, Any]:
        redirect = f"{portals[client_id]}/callback"
        return await browser_login(
            real_keycloak.url, realm.name, client_id, redirect_uri=redirect, username=username, password=PASSWORD
        )

    admin = await login("admin-portal", "tenant-admin")
    voter = await login("voting-portal", "voter-one")
    for mode in ("GET", "POST"):
        admin_verdict = await real_hook.decide(admin["access_token"], mode)
        assert admin_verdict.session == realm.session("admin-user", realm.admin_id), admin_verdict.hook_body
        voter_verdict = await real_hook.decide(voter["access_token"], mode)
        assert voter_verdict.session == realm.session("user", realm.voter_id), voter_verdict.hook_body
    chosen = await real_hook.decide(admin["access_token"], role="election-event-create")
    assert chosen.role == "election-event-create"
    denied = await real_hook.decide(voter["access_token"], role="admin-user")
    assert b'"role_not_allowed"' in denied.hook_body
    # runtime-created users carry the default role, hence the account audience
    assert claims_of(voter["access_token"])["aud"] == "account"


async def test_password_grants_admin_portal_yes_voting_portal_no(
    real_keycloak: RealKeycloak, realm: ProvisionedRealm, real_hook: HookStack
) -> None:
    """admin-portal takes the password grant (it is public: a client_secret sent along is ignored) and its token
    opens the admin session; voting-portal refuses direct grants (voters log in through the browser only)."""
    answer = await token_response(
        real_hook.client,
        real_keycloak.url,
        realm.name,
        grant_type="password",
        scope="openid",
        client_id="admin-portal",
        client_secret="anything-the-tutorial-says",
        username="tenant-admin",
        password=PASSWORD,
    )
    verdict = await real_hook.decide(answer["access_token"], "POST")
    assert verdict.session == realm.session("admin-user", realm.admin_id), verdict.hook_body
    refused = await real_hook.client.post(
        f"{real_keycloak.url}/realms/{realm.name}/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "voting-portal", "username": "voter-one", "password": PASSWORD},
    )
    assert refused.status_code in (400, 401)
    assert refused.json()["error"] == "unauthorized_client"


async def test_api_key_client_password_grant_and_service_account(
    real_keycloak: RealKeycloak, keycloak_admin: KeycloakAdmin, realm: ProvisionedRealm, real_hook: HookStack
) -> None:
    """api-key-client with the secret Keycloak generated: an administrator's password grant opens admin-user;
    its service account has only the default roles, so its client-credentials token is role_not_allowed
    (keycloak-real.md row 7) until an operator grants it admin-user, then it opens admin-user too."""
    secret = await keycloak_admin.client_secret(realm.name, "api-key-client")
    form = {"client_id": "api-key-client", "client_secret": secret}
    answer = await token_response(
        real_hook.client,
        real_keycloak.url,
        realm.name,
        grant_type="password",
        username="tenant-admin",
        password=PASSWORD,
        **form,
    )
    verdict = await real_hook.decide(answer["access_token"])
    assert verdict.session == realm.session("admin-user", realm.admin_id), verdict.hook_body
    service = await token_response(
        real_hook.client, real_keycloak.url, realm.name, grant_type="client_credentials", **form
    )
    refused = await real_hook.decide(service["access_token"])
    assert b'"role_not_allowed"' in refused.hook_body
    account = await keycloak_admin.service_account_id(realm.name, "api-key-client")
    await keycloak_admin.grant_realm_roles(realm.name, account, ["admin-user"])
    service = await token_response(
        real_hook.client, real_keycloak.url, realm.name, grant_type="client_credentials", **form
    )
    granted = await real_hook.decide(service["access_token"])
    assert granted.session == realm.session("admin-user", account), granted.hook_body


async def test_a_wrong_client_secret_gets_no_token(real_keycloak: RealKeycloak, realm: ProvisionedRealm) -> None:
    """api-key-client is confidential: a wrong secret is refused by Keycloak (401 unauthorized_client)."""
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{real_keycloak.url}/realms/{realm.name}/protocol/openid-connect/token",
            data={"grant_type": "client_credentials", "client_id": "api-key-client", "client_secret": "wrong"},
        )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized_client"
