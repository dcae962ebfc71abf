"""The tracker of API keys in use and their expiries (webhook/observability/apikeyexpiry.py): bounded, forgetting."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.core.conftest import EVENT_REALM, EXTRA_REALM, NOW, OTHER_TENANT_ID, TENANT_REALM
from webhook.core.apikeyclaim import ApiKeyClaim
from webhook.core.realms import Realm, parse_realm_name
from webhook.observability.apikeyexpiry import FORGET_AFTER_SECONDS, ApiKeyExpiries, TrackedKey
from webhook.observability.metrics import Metrics
from webhook.provisioning.apikeyclient import name_allowed


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def realm(name: str) -> Realm:
    found = parse_realm_name(name)
    return found if found is not None else Realm(name, None, None)


TENANT = realm(TENANT_REALM)
OTHER = realm(f"tenant-{OTHER_TENANT_ID}")


def test_a_verified_key_with_an_expiry_is_tracked_with_its_realm_and_name() -> None:
    """A key seen with an expiry is reported (realm, name, expiry); seeing it again updates it."""
    tracker = ApiKeyExpiries(Clock(), name_allowed=name_allowed)
    tracker.seen(TENANT, ApiKeyClaim("erp-sync", NOW + 3600))
    tracker.seen(OTHER, ApiKeyClaim("erp-sync", NOW + 60))
    tracker.seen(TENANT, ApiKeyClaim("erp-sync", NOW + 7200))
    assert list(tracker.tracked()) == [  # sorted by realm, then name
        TrackedKey(OTHER.name, "erp-sync", NOW + 60),
        TrackedKey(TENANT_REALM, "erp-sync", NOW + 7200),
    ]
    assert tracker.untracked == 0


def test_keys_without_expiry_outside_tenant_realms_or_with_names_the_template_refuses_are_not_tracked() -> None:
    """No expiry, an event or extra realm, or a name no key can have (the label would be open): not reported."""
    tracker = ApiKeyExpiries(Clock(), name_allowed=name_allowed)
    tracker.seen(TENANT, None)
    tracker.seen(TENANT, ApiKeyClaim("forever", None))
    tracker.seen(realm(EVENT_REALM), ApiKeyClaim("erp-sync", NOW + 60))
    tracker.seen(realm(EXTRA_REALM), ApiKeyClaim("erp-sync", NOW + 60))
    for name in ("ERP", "a" * 64, "erp sync", "-erp", "admin-cli", 'x"}\n'):
        tracker.seen(TENANT, ApiKeyClaim(name, NOW + 60))
    assert list(tracker.tracked()) == []
    tracker.seen(TENANT, ApiKeyClaim("erp-sync", NOW + 60))
    assert [key.name for key in tracker.tracked()] == ["erp-sync"]  # the same tracker does track a good one


def test_the_cap_keeps_the_keys_expiring_soonest() -> None:
    """Full: a key expiring later than every tracked one is counted untracked; one expiring sooner
    replaces the tracked key expiring last. The number of series never exceeds the cap."""
    tracker = ApiKeyExpiries(Clock(), cap=3, name_allowed=name_allowed)
    for index, days in enumerate((10, 20, 30)):
        tracker.seen(TENANT, ApiKeyClaim(f"key-{index}", NOW + days * 86400))
    for index in range(100):  # a flood of long-lived keys
        tracker.seen(TENANT, ApiKeyClaim(f"flood-{index}", NOW + 365 * 86400))
    assert tracker.untracked == 100
    assert [key.name for key in tracker.tracked()] == ["key-0", "key-1", "key-2"]
    tracker.seen(TENANT, ApiKeyClaim("urgent", NOW + 86400))
    assert sorted(key.name for key in tracker.tracked()) == ["key-0", "key-1", "urgent"]
    tracker.seen(TENANT, ApiKeyClaim("key-0", NOW + 11 * 86400))  # a tracked key's update needs no room
    assert len(list(tracker.tracked())) == 3
    assert tracker.untracked == 100


def test_a_key_unseen_for_two_days_is_forgotten_and_makes_room() -> None:
    """A key no token showed for FORGET_AFTER_SECONDS stops being reported; a key seen meanwhile stays;
    when full, forgotten keys free their place before any other is evicted."""
    clock = Clock()
    tracker = ApiKeyExpiries(clock, cap=2, name_allowed=name_allowed)
    tracker.seen(TENANT, ApiKeyClaim("revoked", NOW + 30 * 86400))
    tracker.seen(TENANT, ApiKeyClaim("nightly", NOW + 30 * 86400))
    clock.now += FORGET_AFTER_SECONDS - 60
    tracker.seen(TENANT, ApiKeyClaim("nightly", NOW + 30 * 86400))
    assert len(list(tracker.tracked())) == 2
    clock.now += 120
    tracker.seen(TENANT, ApiKeyClaim("later", NOW + 60 * 86400))  # full, expires last: takes the forgotten place
    assert [key.name for key in tracker.tracked()] == ["later", "nightly"]
    assert tracker.untracked == 0


def test_metrics_expose_one_gauge_per_tracked_key_and_the_untracked_count() -> None:
    """/metrics: webhook_api_key_expiry_timestamp_seconds{realm,key} = the expiry; untracked as a counter."""
    tracker = ApiKeyExpiries(Clock(), cap=1, name_allowed=name_allowed)
    tracker.seen(TENANT, ApiKeyClaim("erp-sync", NOW + 3600))
    tracker.seen(TENANT, ApiKeyClaim("later", NOW + 7200))
    metrics = Metrics()
    metrics.watch_api_keys(tracker)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }
    expiry = ("webhook_api_key_expiry_timestamp_seconds", (("key", "erp-sync"), ("realm", TENANT_REALM)))
    assert samples[expiry] == NOW + 3600
    assert samples[("webhook_api_keys_untracked_total", ())] == 1
    assert sum(1 for name, _ in samples if name == "webhook_api_key_expiry_timestamp_seconds") == 1
