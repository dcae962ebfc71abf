"""The API key actions' refusals, on SQLite and PostgreSQL: each is decided before Keycloak is called,
and none leaves a row in `api_key_event` (the full flow runs against the real Keycloak: tests/keycloak)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.actions.conftest import TENANT, ActionStack, StackFactory, random_uuid
from webhook.db.models import ApiKeyEvent

pytestmark = pytest.mark.anyio
WRITER = ["admin-user", "api-key-write", "tenant-read"]


async def _create(stack: ActionStack, arguments: dict[str, Any], *, token: str | None = None) -> str | None:
    verdict = await stack.call("createApiKey", raw_input=arguments, token=token, required=("client_secret",))
    assert verdict.outcome != "data"
    return verdict.code


async def test_refusals_change_nothing(stack: ActionStack) -> None:
    """No permission, bad input, a role the caller lacks or a forbidden one: refused, no Keycloak call, no row."""

    def admin_calls() -> int:
        return sum(1 for _, path in stack.keycloak.requests if path.startswith("/admin") or "/token" in path)

    before = admin_calls()
    writer = stack.token(roles=WRITER)
    assert await _create(stack, {"name": "erp", "roles": ["tenant-read"]}, token=stack.token(roles=["admin-user"])) == (
        "forbidden"
    )
    assert await _create(stack, {"name": "Bad_Name", "roles": ["tenant-read"]}, token=writer) == "validation-failed"
    assert await _create(stack, {"name": "erp-sync", "roles": []}, token=writer) == "validation-failed"
    assert (
        await _create(
            stack, {"name": "erp-sync", "roles": ["tenant-read"], "expires_at": "2000-01-01T00:00:00Z"}, token=writer
        )
        == "validation-failed"
    )
    assert (
        await _create(stack, {"name": "erp-sync", "roles": ["tenant-read"], "tenant_id": TENANT}, token=writer)
        == "validation-failed"
    )
    assert await _create(stack, {"name": "erp-sync", "roles": ["election-event-create"]}, token=writer) == "forbidden"
    admin_writer = stack.token(roles=[*WRITER, "admin"])
    assert await _create(stack, {"name": "erp-sync", "roles": ["admin"]}, token=admin_writer) == "forbidden"
    for action in ("rotateApiKey", "revokeApiKey"):
        verdict = await stack.call(action, raw_input={"name": "erp-sync"}, token=stack.token(roles=["admin-user"]))
        assert verdict.code == "forbidden"
    listed = await stack.call("apiKeys", raw_input={}, token=stack.token(roles=["admin-user"]), required=("keys",))
    assert listed.code == "forbidden"
    assert await stack.count(ApiKeyEvent) == 0
    assert admin_calls() == before


async def test_an_event_realms_token_may_not_manage_keys(sqlite_stack: ActionStack) -> None:
    """Keys live in the tenant's own realm: an event realm's token (same tenant) is forbidden."""
    event_realm = f"tenant-{TENANT}-event-{random_uuid()}"
    sqlite_stack.keycloak.add_realm(event_realm)
    token = sqlite_stack.keycloak.mint(event_realm, roles=WRITER)
    verdict = await sqlite_stack.call(
        "createApiKey", raw_input={"name": "erp-sync", "roles": ["tenant-read"]}, token=token
    )
    assert verdict.code == "forbidden" and "tenant's own realm" in (verdict.message or "")


async def test_without_an_admin_client_the_actions_are_unavailable(make_sqlite_stack: StackFactory) -> None:
    """No KEYCLOAK_ADMIN_CLIENT_SECRET: every API key action answers `unavailable`, nothing is recorded."""
    async with make_sqlite_stack(
        KEYCLOAK_ADMIN_CLIENT_ID="", KEYCLOAK_ADMIN_CLIENT_SECRET="", PROVISIONING_WORKER="false"
    ) as stack:
        verdict = await stack.call("apiKeys", raw_input={}, token=stack.token(roles=WRITER), required=("keys",))
        assert verdict.code == "unavailable"
        assert await stack.count(ApiKeyEvent) == 0
