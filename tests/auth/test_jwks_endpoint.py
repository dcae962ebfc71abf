"""GET /jwks: the aggregated signing keys for Hasura JWT mode."""

from __future__ import annotations

import orjson
import pytest

from tests.auth.conftest import StackFactory, bearer
from webhook.auth.jwksview import union_jwks
from webhook.core.keys import parse_jwks
from webhook.testing.keycloak import FakeKeycloak

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_union_of_loaded_realms_signing_keys_only(make_stack: StackFactory) -> None:
    """/jwks lists each loaded realm's sig keys (no enc key, no private member) with a max-age."""
    async with make_stack() as stack:
        response = await stack.client.get(f"{stack.url}/jwks")
        assert response.status_code == 200
        assert response.headers["cache-control"].startswith("max-age=")
        assert "no-cache" not in response.headers["cache-control"]
        kids = [key["kid"] for key in response.json()["keys"]]
        assert kids == [stack.tenant.active_kid]
        assert stack.tenant.enc_kid not in kids
        for key in response.json()["keys"]:
            assert key["use"] == "sig"
            assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys()

        token = stack.keycloak.mint(stack.event.name)
        await stack.hasura("GET").authenticate(bearer(token))
        loaded = {key["kid"] for key in (await stack.client.get(f"{stack.url}/jwks")).json()["keys"]}
        assert loaded == {stack.tenant.active_kid, stack.event.active_kid}


async def test_last_good_set_served_when_keycloak_fails(make_stack: StackFactory) -> None:
    """When every realm's keys are past max-stale and Keycloak is down, /jwks still serves the last good set."""
    clock = Clock()
    async with make_stack(clock=clock, JWKS_TTL_SECONDS="10", JWKS_MAX_STALE_SECONDS="0") as stack:
        first = (await stack.client.get(f"{stack.url}/jwks")).json()
        assert first["keys"]
        stack.keycloak.set_behaviour("down")
        clock.now += 11
        runtime = stack.app.runtime
        assert runtime is not None
        await runtime.cache.refresh_due()
        assert runtime.cache.realm_keys() == {}
        assert (await stack.client.get(f"{stack.url}/jwks")).json() == first


def test_kid_shared_by_two_realms_is_left_out() -> None:
    """A kid published by two realms is ambiguous and not in the union; unique kids are kept."""
    fake = FakeKeycloak(issuer_base="http://kc.test")
    document = orjson.dumps(fake.add_realm("tenant-11111111-1111-4111-8111-111111111111").jwks())
    keys = parse_jwks(document, frozenset({"RS256"}))
    assert len(union_jwks({"a": keys})["keys"]) == 1
    assert union_jwks({"a": keys, "b": keys}) == {"keys": []}
