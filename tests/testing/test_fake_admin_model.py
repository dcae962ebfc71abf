"""The fake admin API's model of Keycloak 26 (top-level PUT, creator grants, token growth, 431) and the seam on it."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from webhook.provisioning.keycloakadmin import AdminCredentials, AdminDenied, AdminHeaderTooLarge, KeycloakAdmin
from webhook.provisioning.reconciler import RealmReconciler
from webhook.provisioning.templates import load_template, render
from webhook.testing.adminmodel import GRANT_BYTES
from webhook.testing.keycloak import FakeKeycloak

pytestmark = pytest.mark.anyio
CLIENT = ("webhook-admin", "s3cret-admin")
TENANT = "5a0c7a4e-9b1d-4c2e-8f3a-6b7c8d9e0f1a"


def admin(keycloak: FakeKeycloak, http: httpx.AsyncClient) -> KeycloakAdmin:
    return KeycloakAdmin(http, AdminCredentials(keycloak.url, "master", CLIENT[0], SecretStr(CLIENT[1])))


def tenant(tenant_id: str = TENANT) -> dict[str, object]:
    return render(load_template("tenant"), "tenant", tenant_id=tenant_id)


async def test_put_changes_the_top_level_only_and_get_has_no_sub_resources(
    keycloak: FakeKeycloak, http: httpx.AsyncClient
) -> None:
    """PUT ignores clients/roles in its body and replaces attributes; GET returns no clients, roles or users."""
    keycloak.configure_admin(*CLIENT)
    api = admin(keycloak, http)
    rendered = tenant()
    name = str(rendered["realm"])
    assert await api.create_realm(rendered) == "created"
    await api.update_realm(name, {"displayName": "X", "clients": [], "attributes": {"only": "this"}})
    live = await api.get_realm(name)
    assert live is not None and live["displayName"] == "X" and live["attributes"] == {"only": "this"}
    assert not {"clients", "roles", "groups", "users"} & live.keys()
    assert {c["clientId"] for c in await api.clients(name)} == {"admin-portal", "voting-portal", "api-key-client"}


async def test_realms_the_client_did_not_create_are_forbidden_unless_admin(
    keycloak: FakeKeycloak, http: httpx.AsyncClient
) -> None:
    """A realm made by someone else: GET answers the name only, the reconciler fails with view-realm named."""
    keycloak.configure_admin(*CLIENT)
    rendered = tenant()
    name = str(rendered["realm"])
    keycloak.admin_api.import_realm(rendered)
    api = admin(keycloak, http)
    assert await api.get_realm(name) == {"realm": name}
    with pytest.raises(AdminDenied, match=r"^get realm: HTTP 403, the admin client lacks view-realm on this realm"):
        await RealmReconciler(api).converge(rendered, "tenant")
    with pytest.raises(AdminDenied, match=r"^update realm: HTTP 403, the admin client lacks manage-realm"):
        await api.update_realm(name, {"displayName": "X"})
    keycloak.configure_admin(*CLIENT, admin=True)
    converged = await RealmReconciler(admin(keycloak, http)).converge(rendered, "tenant")
    assert converged.drift == [] and converged.result == "updated"  # the API key's service account got its role


async def test_converging_twice_changes_nothing_the_second_time(
    keycloak: FakeKeycloak, http: httpx.AsyncClient
) -> None:
    """The second converge of a converged realm is "unchanged": no PUT, no mapper or role write."""
    keycloak.configure_admin(*CLIENT)
    reconciler = RealmReconciler(admin(keycloak, http))
    rendered = tenant()
    assert (await reconciler.converge(rendered, "tenant")).result == "created"
    before = len(keycloak.admin_calls)
    again = await reconciler.converge(rendered, "tenant")
    assert (again.result, again.changes, again.drift) == ("unchanged", 0, [])
    writes = [c for c in keycloak.admin_calls[before:] if c.method in ("PUT", "DELETE")]
    assert writes == []
    assert keycloak.admin_api.service_account_roles(str(rendered["realm"]), "api-key-client") >= {"admin-user"}


async def test_admin_token_grows_per_created_realm_unless_lightweight_and_431_is_permanent(
    keycloak: FakeKeycloak, http: httpx.AsyncClient
) -> None:
    """Each realm adds GRANT_BYTES to a full token; past the header limit every call is 431 (permanent)."""
    keycloak.configure_admin(*CLIENT)
    keycloak.admin_api.header_limit = 4300  # fits 1262 + 5 * 540 bytes of token, not 6 * 540
    api = admin(keycloak, http)
    await api.list_realm_names()
    first = api.access_token_bytes()
    for index in range(5):
        await api.create_realm({"realm": f"scratch-{index}"})
    api.forget_token()
    await api.list_realm_names()
    assert api.access_token_bytes() - first == 5 * GRANT_BYTES
    await api.create_realm({"realm": "scratch-5"})
    api.forget_token()
    with pytest.raises(AdminHeaderTooLarge, match="HTTP 431"):
        await api.list_realm_names()
    keycloak.configure_admin(*CLIENT, lightweight=True)
    light = admin(keycloak, http)
    await light.list_realm_names()
    assert light.access_token_bytes() < first


async def test_partial_import_skip_keeps_clients_overwrite_recreates_them(
    keycloak: FakeKeycloak, http: httpx.AsyncClient
) -> None:
    """SKIP leaves an existing client (same id, same secret); OVERWRITE makes a new one (why we never use it)."""
    keycloak.configure_admin(*CLIENT)
    api = admin(keycloak, http)
    rendered = tenant()
    name = str(rendered["realm"])
    await api.create_realm(rendered)
    ids = {c["clientId"]: c["id"] for c in await api.clients(name)}
    skipped = await api.partial_import(name, {"ifResourceExists": "SKIP", "clients": rendered["clients"]})
    assert (skipped["added"], skipped["skipped"]) == (0, 3)
    assert {c["clientId"]: c["id"] for c in await api.clients(name)} == ids
    await api.partial_import(name, {"ifResourceExists": "OVERWRITE", "clients": rendered["clients"]})
    assert not set(ids.values()) & {c["id"] for c in await api.clients(name)}
