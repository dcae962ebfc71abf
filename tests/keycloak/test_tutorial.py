"""The platform's own API documentation, followed as written against a tenant realm made from our template.

- Seed 000 ("API Authentication with Keycloak"): password grant with ``client_id=admin-portal`` and a
  ``client_secret`` and ``scope=openid``, then the ``refresh_token`` grant with the same client, then a
  GraphQL request carrying each access token (here: through the Hasura stand-in to our hook).
- Seed 001 ("Client API Authentication"): password grant on ``api-key-client`` with the client's secret
  (read where the seed says: the client's credentials), then the ``CreateElectionEvent`` request's headers
  (``x-hasura-role: admin-user``).
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
    claims_of,
    provision,
)
from webhook.testing.realkeycloak import RealKeycloak

pytestmark = [pytest.mark.keycloak, pytest.mark.anyio]

GRAPHQL_TYPENAME = {"query": "query { __typename }"}


@pytest.fixture
async def tenant(keycloak_admin: KeycloakAdmin) -> AsyncIterator[ProvisionedRealm]:
    provisioned = await provision(keycloak_admin, "tenant")
    yield provisioned
    await keycloak_admin.delete_realm(provisioned.name)


async def _token_endpoint(client: httpx.AsyncClient, keycloak_url: str, tenant_id: str, form: dict[str, str]) -> Any:
    # the tutorial's URL pattern: {KEYCLOAK_URL}/realms/tenant-{TENANT_ID}/protocol/openid-connect/token
    response = await client.post(
        f"{keycloak_url}/realms/tenant-{tenant_id}/protocol/openid-connect/token",
        data=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text[:300]
    return response.json()


async def test_seed_000_password_then_refresh_then_graphql(
    real_keycloak: RealKeycloak, tenant: ProvisionedRealm, real_hook: HookStack
) -> None:
    """Step 1 answers the tutorial's sample fields (expires_in 300, a refresh token of ~1800 s, an ID token,
    scope openid profile email); step 2's refresh gives a new access token of the same session; each access
    token authenticates the GraphQL call."""
    client_form = {"client_id": "admin-portal", "client_secret": "admin-portal-client-secret"}
    first = await _token_endpoint(
        real_hook.client,
        real_keycloak.url,
        tenant.tenant_id,
        {"grant_type": "password", "scope": "openid", **client_form, "username": "tenant-admin", "password": PASSWORD},
    )
    assert first["token_type"] == "Bearer" and 290 < first["expires_in"] <= 300  # whole seconds left
    assert 1700 < first["refresh_expires_in"] <= 1800
    assert set(first["scope"].split()) == {"openid", "profile", "email"}
    assert {"access_token", "refresh_token", "id_token", "session_state"} <= set(first)
    refreshed = await _token_endpoint(
        real_hook.client,
        real_keycloak.url,
        tenant.tenant_id,
        {"grant_type": "refresh_token", **client_form, "refresh_token": first["refresh_token"]},
    )
    assert refreshed["access_token"] != first["access_token"]
    assert claims_of(refreshed["access_token"])["sid"] == claims_of(first["access_token"])["sid"]
    for access in (first["access_token"], refreshed["access_token"]):
        for mode in ("GET", "POST"):
            verdict = await real_hook.hasura(mode).authenticate(
                {"Content-Type": "application/json", "Authorization": f"Bearer {access}"}, GRAPHQL_TYPENAME
            )
            assert verdict.session == tenant.session("admin-user", tenant.admin_id), verdict.hook_body


async def test_seed_001_api_key_client_password_grant_then_create_event_headers(
    real_keycloak: RealKeycloak, keycloak_admin: KeycloakAdmin, tenant: ProvisionedRealm, real_hook: HookStack
) -> None:
    """The API-key example: the secret from the client's credentials, the password grant with scope openid, then
    the CreateElectionEvent request's headers (x-hasura-role admin-user, a browser's Origin) open admin-user."""
    secret = await keycloak_admin.client_secret(tenant.name, "api-key-client")
    answer = await _token_endpoint(
        real_hook.client,
        real_keycloak.url,
        tenant.tenant_id,
        {
            "client_id": "api-key-client",
            "scope": "openid",
            "client_secret": secret,
            "grant_type": "password",
            "username": "tenant-admin",
            "password": PASSWORD,
        },
    )
    assert {"access_token", "refresh_token", "id_token"} <= set(answer)
    headers = {
        "User-Agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Accept": "*/*",
        "content-type": "application/json",
        "authorization": f"Bearer {answer['access_token']}",
        "x-hasura-role": "admin-user",
        "Origin": "http://127.0.0.1:3002",
    }
    mutation = {
        "operationName": "CreateElectionEvent",
        "query": "mutation CreateElectionEvent($electionEvent: CreateElectionEventInput!) "
        "{ insertElectionEvent(object: $electionEvent) { id __typename } }",
        "variables": {"electionEvent": {"name": "Create Event 1", "tenant_id": tenant.tenant_id}},
    }
    for mode in ("GET", "POST"):
        verdict = await real_hook.hasura(mode).authenticate(headers, mutation)
        assert verdict.session == tenant.session("admin-user", tenant.admin_id), verdict.hook_body
