"""The real-Keycloak harness itself: the pinned server starts on loopback and its admin API answers."""

from __future__ import annotations

import httpx
import pytest

from webhook.testing.realkeycloak import KEYCLOAK_VERSION, RealKeycloak

pytestmark = pytest.mark.keycloak


def test_the_pinned_server_is_ready_on_loopback(real_keycloak: RealKeycloak) -> None:
    """The server answers OIDC discovery on 127.0.0.1 with its own URL as the master realm's issuer."""
    discovery = httpx.get(f"{real_keycloak.url}/realms/master/.well-known/openid-configuration", timeout=30)
    assert discovery.status_code == 200
    assert discovery.json()["issuer"] == f"{real_keycloak.url}/realms/master"
    assert real_keycloak.url.startswith("http://127.0.0.1:")


def test_the_bootstrap_admin_client_reaches_the_admin_api(real_keycloak: RealKeycloak) -> None:
    """The bootstrap admin client's token lists realms and the server reports the pinned version."""
    with real_keycloak.admin() as admin:
        realms = admin.get("").json()
        info = httpx.get(
            f"{real_keycloak.url}/admin/serverinfo",
            headers={"Authorization": admin.headers["Authorization"]},
            timeout=30,
        ).json()
    assert "master" in {realm["realm"] for realm in realms}
    assert info["systemInfo"]["version"] == KEYCLOAK_VERSION


def test_the_jvm_uses_a_bounded_heap(real_keycloak: RealKeycloak) -> None:
    """The server's resident memory stays under the heap bound plus JVM overhead (about 1.5 GB)."""
    rss = real_keycloak.rss_bytes()
    assert 100 * 2**20 < rss < 1536 * 2**20
