"""Fixtures of the real-Keycloak tests: the demo realm imported once into the session server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.support import demo_realm_path
from tests.keycloak.support import HookStack, KeycloakAdmin, hook_stack
from webhook.testing.realkeycloak import RealKeycloak


@dataclass(frozen=True)
class DemoRealm:
    """The compose stack's demo realm, as imported into the session's Keycloak."""

    server: RealKeycloak
    representation: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return str(self.representation["realm"])

    @property
    def tenant_id(self) -> str:
        return self.name.removeprefix("tenant-")

    def user_id(self, username: str) -> str:
        return str(next(u["id"] for u in self.representation["users"] if u["username"] == username))


@pytest.fixture(scope="session")
def demo_realm(real_keycloak: RealKeycloak) -> Iterator[DemoRealm]:
    """keycloak/import/<demo>.json, byte for byte, through ``POST /admin/realms`` (``RealmManager.importRealm``,
    the code path of ``start-dev --import-realm``), once per session."""
    path = demo_realm_path()
    representation = json.loads(path.read_text())
    with real_keycloak.admin() as admin:
        response = admin.post("", content=path.read_bytes(), headers={"Content-Type": "application/json"})
        assert response.status_code == 201, response.text
    yield DemoRealm(real_keycloak, representation, path)
    with real_keycloak.admin() as admin:
        admin.delete(f"/{representation['realm']}")


@pytest.fixture
async def keycloak_admin(real_keycloak: RealKeycloak) -> AsyncIterator[KeycloakAdmin]:
    """The session server's admin API (bootstrap admin client), with its own HTTP client."""
    async with httpx.AsyncClient(timeout=60) as client:
        yield KeycloakAdmin(real_keycloak.url, client)


@pytest.fixture
async def real_hook(real_keycloak: RealKeycloak, tmp_path: Path) -> AsyncIterator[HookStack]:
    """Our webhook in front of the session's Keycloak (default settings)."""
    async with hook_stack(real_keycloak.url, tmp_path) as stack:
        yield stack
