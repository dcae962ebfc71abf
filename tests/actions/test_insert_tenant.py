"""insertTenant: only the super-admin tenant creates tenants; the tenant's realm is provisioned and trusted."""

from __future__ import annotations

from typing import Any

import pytest

from tests.actions.conftest import SUPER, TENANT, ActionStack, random_uuid
from webhook.core.session import CLAIM_EVENT, CLAIM_TENANT
from webhook.db.models import RealmProvisioningJob, Tenant

pytestmark = pytest.mark.anyio
REQUIRED = ("id", "slug", "realm", "provisioning")


def tenant_input(**fields: Any) -> dict[str, Any]:
    return {"id": random_uuid(), "slug": f"acme-{random_uuid()[:8]}", **fields}


async def create(stack: ActionStack, fields: dict[str, Any], **kwargs: Any) -> Any:
    kwargs.setdefault("token", stack.token(SUPER))
    return await stack.call("insertTenant", fields, required=REQUIRED, **kwargs)


async def test_super_admin_creates_a_tenant_and_its_realm(stack: ActionStack) -> None:
    """The super-admin tenant creates a tenant row and realm tenant-<id>; the realm's tokens then work."""
    fields = tenant_input(labels={"plan": "gold"}, settings={"lang": "en"})
    verdict = await create(stack, fields)
    assert verdict.outcome == "data", verdict.body
    realm = f"tenant-{fields['id']}"
    assert verdict.data == {"id": fields["id"], "slug": fields["slug"], "realm": realm, "provisioning": "pending"}
    async with stack.store.sessions() as session:
        row = await session.get(Tenant, fields["id"])
    assert row is not None
    assert (row.slug, row.labels, row.settings, row.is_active) == (
        fields["slug"],
        {"plan": "gold"},
        {"lang": "en"},
        False,
    )
    assert row.voting_channels == {"kiosk": True, "online": True}

    await stack.provisioned(realm)
    created = stack.keycloak.admin_realms[realm]
    assert created["attributes"] == {"tenant-id": fields["id"], "realm-kind": "tenant"}
    for client in created["clients"]:
        mappers = {m["name"]: m for m in client["protocolMappers"]}
        assert mappers[CLAIM_TENANT]["config"]["claim.value"] == fields["id"]
        assert CLAIM_EVENT not in mappers
    hook = await stack.hook(stack.keycloak.mint(realm))
    assert hook.outcome == "session", hook.hook_body
    assert hook.session is not None and hook.session["x-hasura-tenant-id"] == fields["id"]


async def test_new_tenant_can_then_create_events(stack: ActionStack) -> None:
    """A tenant created by insertTenant is registered: its admins' insertElectionEvent succeeds."""
    fields = tenant_input()
    assert (await create(stack, fields)).outcome == "data"
    await stack.provisioned(f"tenant-{fields['id']}")
    token = stack.keycloak.mint(f"tenant-{fields['id']}")
    verdict = await stack.call("insertElectionEvent", {"tenant_id": fields["id"], "name": "First event"}, token=token)
    assert verdict.outcome == "data", verdict.body


async def test_other_tenant_cannot_create_tenants(sqlite_stack: ActionStack) -> None:
    """A tenant other than the super admin is forbidden, even with tenant-create in its roles."""
    verdict = await create(sqlite_stack, tenant_input(), token=sqlite_stack.token(TENANT))
    assert (verdict.status, verdict.code) == (403, "forbidden")
    assert await sqlite_stack.count(Tenant) == 3


async def test_super_admin_needs_tenant_create(sqlite_stack: ActionStack) -> None:
    """The super-admin tenant's token without tenant-create is forbidden."""
    token = sqlite_stack.token(SUPER, roles=["admin-user"])
    verdict = await create(sqlite_stack, tenant_input(), token=token)
    assert (verdict.status, verdict.code) == (403, "forbidden")
    assert "tenant-create" in (verdict.message or "")


async def test_nobody_creates_tenants_without_a_super_admin_tenant(make_sqlite_stack: Any) -> None:
    """With SUPER_ADMIN_TENANT_ID unset, insertTenant is forbidden to everyone."""
    async with make_sqlite_stack(SUPER_ADMIN_TENANT_ID="") as stack:
        verdict = await create(stack, tenant_input())
        assert (verdict.status, verdict.code) == (403, "forbidden")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"slug": "Has Spaces"}, "slug"),
        ({"slug": "-dash"}, "slug"),
        ({"slug": "a" * 64}, "slug"),
        ({"slug": None}, "slug"),
        ({"id": "not-a-uuid"}, "id"),
        ({"is_active": "yes"}, "is_active"),
        ({"settings": "x"}, "settings"),
        ({"name": "unknown"}, "name"),
    ],
)
async def test_invalid_tenant_input(sqlite_stack: ActionStack, change: dict[str, Any], field: str) -> None:
    """Bad slugs, ids and JSON types are validation-failed naming the field."""
    verdict = await create(sqlite_stack, {**tenant_input(), **change})
    assert (verdict.status, verdict.code) == (400, "validation-failed")
    assert verdict.extensions is not None and set(verdict.extensions["fields"]) == {field}


async def test_tenant_idempotent_and_conflicts(stack: ActionStack) -> None:
    """Same request: same answer, one row and job; same id other content, or a taken slug: conflict."""
    fields = tenant_input()
    first = await create(stack, fields)
    again = await create(stack, fields)
    assert first.outcome == again.outcome == "data"
    assert again.data["id"] == first.data["id"] and again.data["realm"] == first.data["realm"]
    assert await stack.count(Tenant) == 4
    assert await stack.count(RealmProvisioningJob) == 1
    other_content = await create(stack, {**fields, "is_active": True})
    assert (other_content.status, other_content.code) == (409, "conflict")
    taken_slug = await create(stack, {"id": random_uuid(), "slug": fields["slug"]})
    assert (taken_slug.status, taken_slug.code) == (409, "conflict")
    assert await stack.count(Tenant) == 4
