"""The README's least-privilege setup of the service's admin client, done on a real Keycloak (tests, bench).

The steps, exactly as README "Admin client" lists them (`kcadm.sh` there, the admin REST API here):
1. In the `master` realm, a confidential client (`publicClient: false`) with only the service-account
   grant (`serviceAccountsEnabled: true`; standard flow, direct grants and implicit off).
2. Its attribute `client.use.lightweight.access.token.enabled=true`: the admin token then carries no
   roles, so it stays the same size however many realms the client creates (Keycloak checks admin
   permissions against the role mappings in its database, not against the token).
3. Its service-account user gets the one master realm role `create-realm`. Nothing else: Keycloak
   grants the creator of a realm that realm's management roles (`<realm>-realm` client in master),
   which is all provisioning needs in the realms it made.
"""

from __future__ import annotations

from typing import Final

import httpx

from webhook.testing.realkeycloak import RealKeycloak

LIGHTWEIGHT: Final = "client.use.lightweight.access.token.enabled"


def create_admin_client(
    server: RealKeycloak,
    client_id: str,
    secret: str,
    *,
    lightweight: bool = True,
    roles: tuple[str, ...] = ("create-realm",),
) -> None:
    """Create the provisioning admin client in master (README steps 1-3) with the bootstrap admin."""
    with server.admin() as admin:
        created = admin.post(
            "/master/clients",
            json={
                "clientId": client_id,
                "secret": secret,
                "publicClient": False,
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
                "implicitFlowEnabled": False,
                "attributes": {LIGHTWEIGHT: "true" if lightweight else "false"},
            },
        )
        created.raise_for_status()
        uuid = admin.get("/master/clients", params={"clientId": client_id}).json()[0]["id"]
        user = admin.get(f"/master/clients/{uuid}/service-account-user").json()
        wanted = [admin.get(f"/master/roles/{name}").json() for name in roles]
        if wanted:
            admin.post(f"/master/users/{user['id']}/role-mappings/realm", json=wanted).raise_for_status()


def client_token(server: RealKeycloak, client_id: str, secret: str, realm: str = "master") -> str:
    """A client-credentials access token."""
    response = httpx.post(
        f"{server.url}/realms/{realm}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


__all__ = ["LIGHTWEIGHT", "client_token", "create_admin_client"]
