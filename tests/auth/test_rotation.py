"""Key rotation and fetch amplification over real HTTP, asserted by the fake Keycloak's fetch counts."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from tests.auth.conftest import StackFactory, bearer, random_uuid

pytestmark = pytest.mark.anyio


async def test_new_key_accepted_after_one_refetch_and_removed_key_rejected(make_stack: StackFactory) -> None:
    """A rotated-in key verifies after one refetch; once removed and refreshed, the old key stops verifying."""
    async with make_stack(JWKS_MIN_REFETCH_SECONDS="0") as stack:
        realm = stack.tenant
        old_token = stack.keycloak.mint(realm.name)
        hasura = stack.hasura("GET")
        assert (await hasura.authenticate(bearer(old_token))).outcome == "session"
        assert stack.keycloak.jwks_fetches[realm.name] == 1

        new_kid = realm.rotate(keep_old=True)
        new_token = stack.keycloak.mint(realm.name, kid=new_kid)
        assert (await hasura.authenticate(bearer(new_token))).outcome == "session"
        assert (await hasura.authenticate(bearer(new_token))).outcome == "session"
        assert stack.keycloak.jwks_fetches[realm.name] == 2

        realm.remove_key(realm.signing_kids[0])
        runtime = stack.app.runtime
        assert runtime is not None
        fake_kid = stack.keycloak.mint(realm.name, header={"kid": "gone"})  # an unknown kid forces the refetch
        await hasura.authenticate(bearer(fake_kid))
        verdict = await hasura.authenticate(bearer(old_token))
        assert orjson.loads(verdict.hook_body)["reason"] == "unknown_kid"
        assert (await hasura.authenticate(bearer(new_token))).outcome == "session"


async def test_unknown_kid_flood_makes_one_fetch(make_stack: StackFactory) -> None:
    """100 concurrent requests with unknown kids for one realm cause a single JWKS refetch."""
    async with make_stack(JWKS_MIN_REFETCH_SECONDS="0") as stack:
        stack.keycloak.reset_counters()
        stack.keycloak.set_behaviour("slow", stack.tenant.name)
        hasura = stack.hasura("GET")
        tokens = [stack.keycloak.mint(stack.tenant.name, header={"kid": f"junk-{i}"}) for i in range(100)]
        calls = [asyncio.create_task(hasura.authenticate(bearer(t))) for t in tokens]
        await stack.keycloak.wait_for_jwks_fetches(stack.tenant.name, 1)
        stack.keycloak.release_slow()
        verdicts = await asyncio.gather(*calls)
        assert {orjson.loads(v.hook_body)["reason"] for v in verdicts} == {"unknown_kid"}
        assert stack.keycloak.jwks_fetches[stack.tenant.name] == 1


async def test_burst_of_nonexistent_realms_is_bounded(make_stack: StackFactory) -> None:
    """Tokens naming 300 pattern-valid but nonexistent realms: at most one fetch each, LRU-capped memory."""
    async with make_stack(JWKS_MAX_REALMS="50") as stack:
        hasura = stack.hasura("GET")
        issuers = [f"{stack.keycloak.url}/realms/tenant-{random_uuid()}" for _ in range(300)]
        for iss in issuers:
            token = stack.keycloak.mint(stack.tenant.name, claims={"iss": iss})
            verdict = await hasura.authenticate(bearer(token))
            assert orjson.loads(verdict.hook_body)["reason"] in ("unknown_realm", "jwks_unavailable")
        runtime = stack.app.runtime
        assert runtime is not None
        assert len(runtime.cache) <= 50
        ghost_fetches = sum(n for realm, n in stack.keycloak.jwks_fetches.items() if realm != stack.tenant.name)
        assert ghost_fetches <= 300
        for iss in issuers[-10:]:  # recently seen ghosts are negative-cached: no new fetch
            await hasura.authenticate(bearer(stack.keycloak.mint(stack.tenant.name, claims={"iss": iss})))
        assert sum(n for r, n in stack.keycloak.jwks_fetches.items() if r != stack.tenant.name) == ghost_fetches
