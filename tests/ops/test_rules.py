"""The shipped alerting rules: valid for promtool, unit-tested alert by alert, documented, settable.

`promtool test rules` runs deploy/prometheus/tests/*.test.yml (input series -> expected alerts);
the other tests hold the rules to the project's rules: every alert has a firing test, a severity,
a summary and a README runbook entry; thresholds live in thresholds.yml only; every metric a rule
reads is one the service exports (or one listed as pending, which must not exist yet).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.rules import (
    PENDING_METRICS,
    README,
    RULE_TESTS,
    RULES,
    THRESHOLDS,
    alerts,
    load_yaml,
    metric_families,
    promtool,
    readme_anchors,
    recording_rules,
    thresholds,
)
from webhook.core.apikeyclaim import ApiKeyClaim
from webhook.core.realms import Realm
from webhook.observability.apikeyexpiry import ApiKeyExpiries
from webhook.observability.collectors import RealmHealth
from webhook.observability.metrics import Metrics
from webhook.provisioning.apikeyclient import name_allowed

ALERT_NAMES = [alert.name for alert in alerts()]


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own files, no shell
        [promtool(), *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_check_rules_accepts_both_files() -> None:
    """`promtool check rules` accepts the rules and the thresholds (syntax, PromQL, templates)."""
    result = run_promtool("check", "rules", RULES, THRESHOLDS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_rule_unit_tests_pass(test_file: Path) -> None:
    """Each promtool unit test file passes: the input series raise exactly the expected alerts."""
    result = run_promtool("test", "rules", test_file)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests can fail: an expected summary that differs from the real one is reported."""
    source = RULE_TESTS[0]
    broken = tmp_path / source.name
    text = source.read_text().replace("../", f"{source.parent.parent}/")
    assert 'summary: "' in text
    broken.write_text(text.replace('summary: "', 'summary: "not this: ', 1))
    result = run_promtool("test", "rules", broken)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def fired_in_tests() -> dict[str, int]:
    """Alert name -> how many promtool evaluations expect it firing."""
    fired: dict[str, int] = {}
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for check in test.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired[check["alertname"]] = fired.get(check["alertname"], 0) + 1
    return fired


def test_every_alert_has_a_unit_test_that_makes_it_fire() -> None:
    """No alert is shipped without a promtool test in which it fires."""
    fired = fired_in_tests()
    assert [name for name in ALERT_NAMES if name not in fired] == []
    assert set(fired) <= set(ALERT_NAMES)


def test_every_alert_has_severity_summary_and_a_runbook_entry() -> None:
    """Severity critical or warning, a summary, and a runbook_url whose anchor is a README heading."""
    anchors = readme_anchors()
    for alert in alerts():
        assert alert.labels.get("severity") in ("critical", "warning"), alert.name
        assert alert.annotations.get("summary"), alert.name
        url = alert.annotations.get("runbook_url", "")
        assert url == f"README.md#{alert.name.lower()}", (alert.name, url)
        assert url.split("#", 1)[1] in anchors, f"README has no heading for {alert.name}"


def test_summaries_name_the_realm_reason_and_replica_they_fire_for() -> None:
    """In every expected firing of the unit tests, the summary names the alert's realm, reason,
    instance and cause labels (so a page says which realm or reason without opening a graph)."""
    checked = 0
    for path in RULE_TESTS:
        for test in load_yaml(path)["tests"]:
            for check in test.get("alert_rule_test", []):
                for expected in check.get("exp_alerts", []):
                    summary = expected["exp_annotations"]["summary"]
                    for label in ("realm", "reason", "instance", "cause", "threshold"):
                        if label in expected["exp_labels"]:
                            assert str(expected["exp_labels"][label]) in summary, (check["alertname"], label)
                            checked += 1
    assert checked >= 10


def numbers_outside_selectors(expr: str) -> list[str]:
    """Number literals of a PromQL expression outside strings, range selectors and offsets."""
    stripped = re.sub(r'"[^"]*"', '""', expr)
    stripped = re.sub(r"\[[^\]]*\]", "[]", stripped)
    stripped = re.sub(r"offset \w+", "offset", stripped)
    stripped = re.sub(r"[a-zA-Z_:][a-zA-Z0-9_:]*", "name", stripped)
    return [number for number in re.findall(r"\d+(?:\.\d+)?", stripped) if float(number) != 0]


def test_alert_expressions_hold_no_thresholds_of_their_own() -> None:
    """Thresholds are operator settings in thresholds.yml: alert expressions compare against
    webhook:threshold:* and hold no number but 0 (of a boolean gauge or `up`)."""
    offenders = {alert.name: numbers_outside_selectors(alert.expr) for alert in alerts()}
    assert {name: found for name, found in offenders.items() if found} == {}
    assert numbers_outside_selectors('rate(x{a="5"}[5m] offset 1h) > 0.25') == ["0.25"]  # the check can fail


def test_every_threshold_is_used_and_guarded_against_being_missing() -> None:
    """Each threshold is compared against by some alert, and WebhookAlertThresholdsMissing names it."""
    names = set(thresholds())
    expressions = " ".join(alert.expr for alert in alerts() if alert.name != "WebhookAlertThresholdsMissing")
    used = set(re.findall(r"webhook:threshold:([a-z0-9_]+)", expressions))
    assert used == names
    (guard,) = [alert for alert in alerts() if alert.name == "WebhookAlertThresholdsMissing"]
    guarded = set(re.findall(r'absent\(webhook:threshold:([a-z0-9_]+)\), "threshold", "\1"', guard.expr))
    assert guarded == names


def test_readme_threshold_table_matches_thresholds_file() -> None:
    """The README's threshold table lists every threshold with the value thresholds.yml holds."""
    text = README.read_text()
    rows = dict(re.findall(r"^\| `webhook:threshold:([a-z0-9_]+)` \| `([^`]+)` \|", text, re.MULTILINE))
    assert {name: float(value) for name, value in rows.items()} == thresholds()


def exported_families() -> set[str]:
    """Every metric family the service's registry exposes (with its scrape-time collectors)."""

    class Tokens:
        hits = 0
        misses = 0

        def sizes(self) -> tuple[int, int]:
            return (0, 0)

    class Jwks:
        def pinned_health(self) -> Iterable[RealmHealth]:
            return [RealmHealth("tenant-x", "fresh", 0, 1.0, 10.0, {"ok": 1})]

    class Revocations:
        stats = SimpleNamespace(received={"taken": 1}, applied=0, lag_observer=None)
        set = SimpleNamespace(hits=0)

        def uncertain(self) -> bool:
            return False

    metrics = Metrics()
    metrics.watch_token_cache(Tokens())
    metrics.watch_jwks(Jwks())
    metrics.watch_revocations(Revocations())
    api_keys = ApiKeyExpiries(time.time, name_allowed=name_allowed)
    api_keys.seen(Realm("tenant-x", "x", None), ApiKeyClaim("erp-sync", time.time() + 60))
    metrics.watch_api_keys(api_keys)
    metrics.rejections.labels("expired", "none").inc()  # labelled per realm, so not pre-created
    metrics.actions.labels("insertTenant", "ok").inc()
    names = set()
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            names |= metric_families(sample.name)
    return {name.removesuffix("_created") for name in names}


def referenced_families() -> set[str]:
    expressions = [alert.expr for alert in alerts()] + list(recording_rules(RULES).values())
    return set().union(*(metric_families(expr) for expr in expressions))


def test_rules_read_only_metrics_the_service_exports_or_pending_ones() -> None:
    """Every metric a rule reads is exported today, or listed in PENDING_METRICS (added by another issue)."""
    unknown = referenced_families() - exported_families() - set(PENDING_METRICS)
    assert unknown == set()


def test_pending_metrics_do_not_exist_yet() -> None:
    """A pending metric that the service now exports must leave PENDING_METRICS (tests/ops/rules.py),
    so the dashboard and integration tests start requiring its series."""
    assert set(PENDING_METRICS) & exported_families() == set()


def test_readme_alert_table_matches_the_rules() -> None:
    """The README's alert table lists every alert, in order, with the severity and `for:` of the rules."""
    text = README.read_text()
    rows = re.findall(r"^\| \[(Webhook\w+)\]\(#(\w+)\) \| (\w+) \| `(\w+)` \|", text, re.MULTILINE)
    assert [(name, anchor, severity, duration) for name, anchor, severity, duration in rows] == [
        (alert.name, alert.name.lower(), alert.labels["severity"], alert.duration) for alert in alerts()
    ]
