"""What each realm kind may do (webhook/core/powers.py), enforced the same for the hook and the actions:
event realms (even the super-admin tenant's) create nothing and get no platform roles; a
TRUSTED_EXTRA_REALMS token claiming the super-admin tenant is not the super-admin tenant."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.actions.conftest import OTHER, SUPER, TENANT, ActionStack, StackFactory, random_uuid
from webhook.core.session import CLAIM_TENANT
from webhook.db.models import ElectionEvent, Tenant

pytestmark = pytest.mark.anyio
EXTRA = "platform-ops"
PLATFORM = ("admin-user", "tenant-create", "election-event-create", "platform-operator")


def event_input(tenant: str) -> dict[str, Any]:
    return {"id": random_uuid(), "tenant_id": tenant, "name": "Referendum"}


def tenant_input() -> dict[str, Any]:
    return {"id": random_uuid(), "slug": f"acme-{random_uuid()[:8]}"}


def event_realm(stack: ActionStack, tenant: str) -> str:
    name = f"tenant-{tenant}-event-{random_uuid()}"
    stack.keycloak.add_realm(name)
    return name


async def test_super_admin_event_realm_cannot_create_tenants(sqlite_stack: ActionStack) -> None:
    """A voters' realm of the super-admin tenant holding tenant-create: insertTenant is 403, nothing stored."""
    token = sqlite_stack.keycloak.mint(event_realm(sqlite_stack, SUPER), roles=PLATFORM)
    verdict = await sqlite_stack.call("insertTenant", tenant_input(), token=token, required=("id",))
    assert (verdict.status, verdict.code) == (403, "forbidden"), verdict.body
    assert await sqlite_stack.count(Tenant) == 3


@pytest.mark.parametrize("tenant", [SUPER, TENANT])
async def test_event_realm_tokens_create_no_events(sqlite_stack: ActionStack, tenant: str) -> None:
    """Any event realm's token (the super-admin tenant's too) may not create events, in its tenant or another."""
    token = sqlite_stack.keycloak.mint(event_realm(sqlite_stack, tenant), roles=PLATFORM)
    for target in (tenant, OTHER):
        verdict = await sqlite_stack.call("insertElectionEvent", event_input(target), token=token)
        assert (verdict.status, verdict.code) == (403, "forbidden"), verdict.body
    assert await sqlite_stack.count(ElectionEvent) == 0


async def test_tenant_realm_still_creates_its_events(sqlite_stack: ActionStack) -> None:
    """The tenant realm's token (with election-event-create) creates events of its own tenant only."""
    token = sqlite_stack.token(TENANT)
    assert (await sqlite_stack.call("insertElectionEvent", event_input(TENANT), token=token)).outcome == "data"
    verdict = await sqlite_stack.call("insertElectionEvent", event_input(OTHER), token=token)
    assert (verdict.status, verdict.code) == (403, "tenant-mismatch")


async def test_extra_realm_claiming_the_super_admin_tenant_is_not_it(make_sqlite_stack: StackFactory) -> None:
    """A TRUSTED_EXTRA_REALMS token claiming SUPER_ADMIN_TENANT_ID: no insertTenant, no event for another
    tenant, and the hook grants it no PLATFORM_ROLES; an event of the claimed tenant is allowed."""
    async with make_sqlite_stack(TRUSTED_EXTRA_REALMS=EXTRA) as stack:
        stack.keycloak.add_realm(EXTRA)
        token = stack.keycloak.mint(EXTRA, roles=PLATFORM, hasura_claims={CLAIM_TENANT: SUPER})
        verdict = await stack.call("insertTenant", tenant_input(), token=token, required=("id",))
        assert (verdict.status, verdict.code) == (403, "forbidden"), verdict.body
        verdict = await stack.call("insertElectionEvent", event_input(OTHER), token=token)
        assert (verdict.status, verdict.code) == (403, "tenant-mismatch"), verdict.body
        assert (await stack.call("insertElectionEvent", event_input(SUPER), token=token)).outcome == "data"
        hook = await stack.hasura.authenticate(
            {"Authorization": f"Bearer {token}", "X-Hasura-Role": "platform-operator"}
        )
        assert orjson.loads(hook.hook_body)["reason"] == "role_not_allowed"
        assert await stack.count(Tenant) == 3


async def test_platform_roles_never_from_event_realms(sqlite_stack: ActionStack) -> None:
    """The hook refuses platform-operator to the super-admin tenant's event realm, grants it to its tenant realm."""
    requested = "platform-operator"
    voters = sqlite_stack.keycloak.mint(event_realm(sqlite_stack, SUPER), roles=PLATFORM)
    hook = await sqlite_stack.hasura.authenticate({"Authorization": f"Bearer {voters}", "X-Hasura-Role": requested})
    assert orjson.loads(hook.hook_body)["reason"] == "role_not_allowed"
    admin = sqlite_stack.token(SUPER, roles=PLATFORM)
    hook = await sqlite_stack.hasura.authenticate({"Authorization": f"Bearer {admin}", "X-Hasura-Role": requested})
    assert hook.role == requested, hook.hook_body


async def test_session_event_not_the_tokens_is_forbidden(stack: ActionStack) -> None:
    """Session variables naming an event the token does not carry: 403 forbidden, audited realm_mismatch."""
    session = {"x-hasura-role": "admin-user", "x-hasura-event-id": random_uuid()}
    verdict = await stack.call("insertElectionEvent", event_input(TENANT), session=session)
    assert (verdict.status, verdict.code) == (403, "forbidden")
    rows = await stack.rejections()
    assert [(r["reason"], r["detail"]) for r in rows] == [("realm_mismatch", "session event is not the token's event")]
    assert await stack.count(ElectionEvent) == 0
