"""/jwks in JWT mode: every provisioned realm's keys (added before its job is done), a deleted one's dropped."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from tests.actions.conftest import ActionStack
from tests.actions.test_provisioning import create_event
from webhook.db.models import RealmProvisioningJob

pytestmark = pytest.mark.anyio


async def kids(stack: ActionStack) -> set[str]:
    response = await stack.client.get(f"{stack.url}/jwks")
    assert response.status_code == 200
    return {key["kid"] for key in response.json()["keys"]}


async def test_provisioned_realm_is_in_jwks_without_any_token_and_leaves_when_its_job_goes(
    sqlite_stack: ActionStack,
) -> None:
    """No token of the new event was ever verified, yet its key is in /jwks once done; gone with its job."""
    realm = await create_event(sqlite_stack)
    await sqlite_stack.provisioned(realm)
    kid = sqlite_stack.keycloak.realm(realm).active_kid
    assert kid in await kids(sqlite_stack)
    runtime = sqlite_stack.app.runtime
    assert runtime is not None and runtime.published is not None
    assert realm in runtime.published.names
    async with sqlite_stack.store.transaction() as session:
        await session.execute(delete(RealmProvisioningJob).where(RealmProvisioningJob.realm == realm))
    assert await runtime.published.sync() == 0  # added by this worker: kept until the database says done
    assert kid in await kids(sqlite_stack)
    max_age = (await sqlite_stack.client.get(f"{sqlite_stack.url}/jwks")).headers["cache-control"]
    assert max_age == f"max-age={runtime.published.max_age(sqlite_stack.settings.jwks_ttl)}"
    assert runtime.published.max_age(sqlite_stack.settings.jwks_ttl) <= runtime.published.interval


async def test_another_replicas_provisioned_realm_is_published_by_sync(sqlite_stack: ActionStack) -> None:
    """A realm done by another replica reaches this one's /jwks at the next sync; dropped when its job is gone."""
    realm = await create_event(sqlite_stack)
    await sqlite_stack.provisioned(realm)
    runtime = sqlite_stack.app.runtime
    assert runtime is not None and runtime.published is not None
    published = runtime.published
    published._local.discard(realm)  # as if another replica's worker had done it
    runtime.cache.unpin(realm)
    assert sqlite_stack.keycloak.realm(realm).active_kid not in await kids(sqlite_stack)
    assert await published.sync() == 1
    assert sqlite_stack.keycloak.realm(realm).active_kid in await kids(sqlite_stack)
    async with sqlite_stack.store.transaction() as session:
        await session.execute(delete(RealmProvisioningJob).where(RealmProvisioningJob.realm == realm))
    assert await published.sync() == 1
    assert sqlite_stack.keycloak.realm(realm).active_kid not in await kids(sqlite_stack)
