"""The fake Keycloak's admin API: client-credentials tokens, realm create/read/update, recording, faults."""

from __future__ import annotations

import httpx
import pytest

from webhook.testing.keycloak import FakeKeycloak

pytestmark = pytest.mark.anyio
CLIENT = ("webhook-admin", "s3cret-admin")


async def admin_token(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> str:
    response = await http.post(
        f"{keycloak.url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": CLIENT[1]},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == keycloak.admin_token_lifetime
    token: str = body["access_token"]
    return token


async def test_admin_api_is_absent_until_configured(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """Without configure_admin the admin paths are 404 and the token endpoint refuses every client."""
    keycloak.add_realm("master")
    assert (await http.get(f"{keycloak.url}/admin/realms")).status_code == 404
    response = await http.post(
        f"{keycloak.url}/realms/master/protocol/openid-connect/token", data={"grant_type": "client_credentials"}
    )
    assert response.status_code == 401


async def test_client_credentials_grant(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """The configured client gets a token (form or HTTP Basic); a wrong secret or grant does not."""
    keycloak.configure_admin(*CLIENT)
    await admin_token(keycloak, http)
    url = f"{keycloak.url}/realms/master/protocol/openid-connect/token"
    basic = await http.post(url, data={"grant_type": "client_credentials"}, auth=CLIENT)
    assert basic.status_code == 200
    wrong = await http.post(
        url, data={"grant_type": "client_credentials", "client_id": CLIENT[0], "client_secret": "x"}
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "unauthorized_client")
    password = await http.post(url, data={"grant_type": "password", "client_id": CLIENT[0], "client_secret": CLIENT[1]})
    assert password.status_code == 400
    assert [c.status for c in keycloak.admin_calls] == [200, 200, 401, 400]


async def test_realm_create_read_update(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """POST creates (201, then 409), GET reads (404 when absent), PUT updates; all need the bearer token."""
    keycloak.configure_admin(*CLIENT)
    base = f"{keycloak.url}/admin/realms"
    assert (await http.post(base, json={"realm": "tenant-x"})).status_code == 401
    headers = {"Authorization": f"Bearer {await admin_token(keycloak, http)}"}
    name = "tenant-0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    assert (await http.get(f"{base}/{name}", headers=headers)).status_code == 404
    created = await http.post(base, json={"realm": name, "enabled": True, "displayName": "A"}, headers=headers)
    assert created.status_code == 201 and created.headers["location"].endswith(f"/admin/realms/{name}")
    assert (await http.post(base, json={"realm": name}, headers=headers)).status_code == 409
    assert (await http.get(f"{base}/{name}", headers=headers)).json()["displayName"] == "A"
    assert (await http.put(f"{base}/{name}", json={"displayName": "B"}, headers=headers)).status_code == 204
    held = keycloak.admin_realms[name]
    assert (held["realm"], held["enabled"], held["displayName"]) == (name, True, "B")
    assert [(c.method, c.status) for c in keycloak.admin_calls_for(name)] == [
        ("GET", 404),
        ("POST", 201),
        ("POST", 409),
        ("GET", 200),
        ("PUT", 204),
    ]
    assert (await http.post(base, json={"enabled": True}, headers=headers)).status_code == 400


async def test_created_realm_is_served_and_mintable(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """A realm created through the admin API publishes keys at once and tokens can be minted for it."""
    keycloak.configure_admin(*CLIENT)
    headers = {"Authorization": f"Bearer {await admin_token(keycloak, http)}"}
    name = "tenant-1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
    await http.post(f"{keycloak.url}/admin/realms", json={"realm": name}, headers=headers)
    jwks = await http.get(f"{keycloak.url}/realms/{name}/protocol/openid-connect/certs")
    assert jwks.status_code == 200 and jwks.json()["keys"]
    assert keycloak.mint(name).count(".") == 2


async def test_admin_down_revoked_and_expired(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> None:
    """ "down" answers 503 (token endpoint too); revoked or expired tokens are 401."""
    keycloak.configure_admin(*CLIENT, token_lifetime=0)
    headers = {"Authorization": f"Bearer {await admin_token(keycloak, http)}"}
    assert (await http.get(f"{keycloak.url}/admin/realms", headers=headers)).status_code == 401  # expired at once
    keycloak.configure_admin(*CLIENT)
    headers = {"Authorization": f"Bearer {await admin_token(keycloak, http)}"}
    assert (await http.get(f"{keycloak.url}/admin/realms", headers=headers)).status_code == 200
    keycloak.set_admin_behaviour("down")
    assert (await http.get(f"{keycloak.url}/admin/realms", headers=headers)).status_code == 503
    token_url = f"{keycloak.url}/realms/master/protocol/openid-connect/token"
    assert (await http.post(token_url, data={"grant_type": "client_credentials"})).status_code == 503
    keycloak.set_admin_behaviour("ok")
    keycloak.revoke_admin_tokens()
    assert (await http.get(f"{keycloak.url}/admin/realms", headers=headers)).status_code == 401
