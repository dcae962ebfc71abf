"""The alerting rules in a real Prometheus scraping the running service: faults fire their alerts.

Prometheus (tests/ops/promserver.py) loads the shipped rules with `for: 0s` and scrapes every
second; the faults are real (the fake Keycloak failing a prefetched realm, forged tokens sent to
the hook) and each alert is seen firing through Prometheus's /api/v1/alerts, with its labels and
summary as the on-call engineer would get them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.ops.promserver import rules_for_tests, run_prometheus
from tests.ops.stack import GOOD_TENANT, OpsStack, ops_stack
from webhook.testing.keycloak import SigningKey, attacker_key

pytestmark = pytest.mark.anyio


async def test_failing_prefetched_realm_fires_jwks_alerts_then_stale_keys_fire_too(tmp_path: Path) -> None:
    """Keycloak failing a prefetched realm fires WebhookJwksFetchFailing and WebhookJwksRealmUnusable
    for that realm only; a realm whose refreshes start failing past its TTL fires WebhookJwksStaleKeys."""
    async with ops_stack(tmp_path) as stack:
        rules = rules_for_tests(tmp_path)
        async with run_prometheus(tmp_path / "prometheus", [stack.target], rules) as prom:
            failing, good = stack.failing.name, stack.good.name
            alert = await prom.wait_firing("WebhookJwksFetchFailing", realm=failing)
            assert alert["labels"]["severity"] == "warning"
            assert alert["annotations"]["summary"].startswith(f"JWKS fetches of prefetched realm {failing} are failing")
            assert alert["annotations"]["runbook_url"] == "README.md#webhookjwksfetchfailing"
            unusable = await prom.wait_firing("WebhookJwksRealmUnusable", realm=failing)
            assert unusable["labels"]["severity"] == "critical"
            assert f"realm {failing} has keys for 0s more" in unusable["annotations"]["summary"]
            assert await prom.firing("WebhookJwksFetchFailing", realm=good) == []
            assert await prom.firing("WebhookJwksStaleKeys") == []

            stack.keycloak.set_behaviour("down", good)
            stack.clock.advance(11)  # past the 10 s TTL: the refresher tries, Keycloak answers 503
            stale = await prom.wait_firing("WebhookJwksStaleKeys", realm=good)
            assert f"Prefetched realm {good} is served from stale keys" in stale["annotations"]["summary"]
            assert await prom.firing("WebhookJwksRealmUnusable", realm=good) == []  # an hour of keys left
            assert await stack.hook(stack.keycloak.mint(good)) == 200  # and they still verify


async def test_burst_of_forged_tokens_fires_the_attack_alert(tmp_path: Path) -> None:
    """Forged tokens (a foreign key under the realm's kid) make WebhookRejectionsAttack fire for
    bad_signature, while the honest traffic next to them fires nothing about rejections."""
    async with ops_stack(tmp_path) as stack:
        rules = rules_for_tests(tmp_path, {"attack_rejections_per_second": 0.02})
        async with run_prometheus(tmp_path / "prometheus", [stack.target], rules) as prom:
            honest = stack.keycloak.mint(stack.good.name)

            async def honest_traffic() -> None:
                for _ in range(5):
                    assert await stack.hook(honest) == 200

            await prom.wait_for(
                "honest decisions scraped",
                lambda: prom.query('webhook:decisions:rate5m{result="allow"} > 0'),
                between=honest_traffic,
            )
            assert await prom.firing("WebhookRejectionsAttack") == []

            async def burst(stack: OpsStack = stack) -> None:
                for _ in range(10):
                    assert await stack.hook(stack.forged()) == 401
                await honest_traffic()

            alert = await prom.wait_for(
                "WebhookRejectionsAttack firing for bad_signature",
                lambda: prom.firing("WebhookRejectionsAttack", reason="bad_signature"),
                between=burst,
            )
            annotations = alert[0]["annotations"]
            assert "tokens rejected as bad_signature" in annotations["summary"]
            assert annotations["runbook_url"] == "README.md#webhookrejectionsattack"
            assert await prom.firing("WebhookRejectionsBrokenMapper") == []


async def test_a_realm_refusing_its_own_users_roles_fires_the_broken_mapper_alert(tmp_path: Path) -> None:
    """Honest tokens of one realm asking for a role their mapper does not grant (role_not_allowed)
    make WebhookRejectionsBrokenMapper fire naming that realm and reason, not the attack alert."""
    async with ops_stack(tmp_path) as stack:
        rules = rules_for_tests(tmp_path, {"mapper_rejections_per_second": 0.02})
        async with run_prometheus(tmp_path / "prometheus", [stack.target], rules) as prom:
            token = stack.keycloak.mint(stack.good.name, roles=["voter"], default_role="voter")

            async def refused() -> None:
                for _ in range(10):
                    assert await stack.hook(token, role="election-event-create") == 401

            alert = await prom.wait_for(
                "WebhookRejectionsBrokenMapper firing",
                lambda: prom.firing("WebhookRejectionsBrokenMapper", realm=stack.good.name, reason="role_not_allowed"),
                between=refused,
            )
            summary = alert[0]["annotations"]["summary"]
            assert summary.startswith(f"Realm {stack.good.name} rejects ") and "as role_not_allowed" in summary
            assert await prom.firing("WebhookRejectionsAttack") == []


async def test_an_api_key_near_its_expiry_fires_the_expiry_alert_naming_realm_and_key(tmp_path: Path) -> None:
    """A verified token of an API key expiring in an hour fires WebhookApiKeyNearExpiry (default 14-day
    threshold) naming its realm, tenant and key, with the time left in webhook:api_key_expiry:seconds_left;
    a key expiring in 60 days fires nothing, and a forged API-key token puts no series in Prometheus."""
    async with ops_stack(tmp_path) as stack:
        rules = rules_for_tests(tmp_path)
        async with run_prometheus(tmp_path / "prometheus", [stack.target], rules) as prom:
            realm, now = stack.good.name, int(time.time())

            def key_token(name: str, expires_at: int, signing_key: SigningKey | None = None) -> str:
                claims = {"api_key": {"name": name, "exp": expires_at}}
                return stack.keycloak.mint(realm, claims=claims, grant="client_credentials", signing_key=signing_key)

            assert await stack.hook(key_token("erp-sync", now + 3600)) == 200
            assert await stack.hook(key_token("reporting", now + 60 * 86400)) == 200
            assert await stack.hook(key_token("forged-key", now + 3600, attacker_key("RS256"))) == 401

            alert = await prom.wait_firing("WebhookApiKeyNearExpiry", realm=realm, key="erp-sync")
            assert alert["labels"]["severity"] == "warning"
            summary = alert["annotations"]["summary"]
            assert summary.startswith(f"API key erp-sync of realm {realm} (tenant {GOOD_TENANT}) expires in 59m "), (
                summary
            )
            assert alert["annotations"]["runbook_url"] == "README.md#webhookapikeynearexpiry"
            # the recording rule's group may run after the alerts' (and the later key's token after a scrape)
            (left,) = await prom.wait_for(
                "erp-sync's time left",
                lambda: prom.query(f'webhook:api_key_expiry:seconds_left{{realm="{realm}",key="erp-sync"}}'),
            )
            assert 0 < float(left["value"][1]) < 3600
            (reporting,) = await prom.wait_for(
                "reporting's time left", lambda: prom.query('webhook:api_key_expiry:seconds_left{key="reporting"}')
            )
            assert float(reporting["value"][1]) > 59 * 86400
            assert await prom.firing("WebhookApiKeyNearExpiry", key="reporting") == []
            assert await prom.query('webhook_api_key_expiry_timestamp_seconds{key="forged-key"}') == []
