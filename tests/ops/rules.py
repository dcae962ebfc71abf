"""The shipped Prometheus rules and Grafana dashboard as data, for the tests of tests/ops.

Also the one list of metrics the rules and the dashboard use that this branch does not export yet
(`PENDING_METRICS`): tests/ops/test_rules.py fails once one of them exists, so the list shrinks
as the issues that add them land.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR: Final = ROOT / "deploy" / "prometheus"
RULES: Final = PROMETHEUS_DIR / "webhook.rules.yml"
THRESHOLDS: Final = PROMETHEUS_DIR / "thresholds.yml"
RULE_TESTS: Final = tuple(sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml")))
DASHBOARD: Final = ROOT / "deploy" / "grafana" / "webhook.json"
README: Final = ROOT / "README.md"

#: Metrics the rules (and the dashboard) rely on that other issues add, and who adds them.
PENDING_METRICS: Final[dict[str, str]] = {}

_METRIC: Final = re.compile(r"\b(webhook_[a-z0-9_]+)")
_HISTOGRAM_SERIES: Final = re.compile(r"_(bucket|count|sum)$")


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    expr: str
    duration: str
    labels: dict[str, str]
    annotations: dict[str, str]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerts(path: Path = RULES) -> list[Alert]:
    """Every alerting rule of a rule file, in order."""
    found = []
    for group in load_yaml(path)["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                found.append(
                    Alert(
                        rule["alert"],
                        rule["expr"],
                        rule.get("for", "0s"),
                        dict(rule.get("labels", {})),
                        dict(rule.get("annotations", {})),
                    )
                )
    return found


def recording_rules(path: Path) -> dict[str, str]:
    """record name -> expression of a rule file."""
    return {
        rule["record"]: rule["expr"]
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def thresholds() -> dict[str, float]:
    """Threshold name (after `webhook:threshold:`) -> its value in thresholds.yml."""
    values = {}
    for record, expr in recording_rules(THRESHOLDS).items():
        match = re.fullmatch(r"vector\(([0-9.e+-]+)\)", expr.strip())
        assert match is not None, f"{record}: a threshold is a constant vector(<number>), got {expr!r}"
        values[record.removeprefix("webhook:threshold:")] = float(match.group(1))
    return values


def metric_families(expr: str) -> set[str]:
    """The webhook metric families an expression reads (histogram series folded into their family)."""
    return {_HISTOGRAM_SERIES.sub("", name) for name in _METRIC.findall(expr)}


def promtool() -> str:
    """The promtool binary; scripts/ensure-prometheus.sh installs it (the tests never skip without it)."""
    found = shutil.which("promtool")
    assert found is not None, "promtool is missing: run ./scripts/ensure-prometheus.sh"
    return found


def prometheus() -> str:
    found = shutil.which("prometheus")
    assert found is not None, "prometheus is missing: run ./scripts/ensure-prometheus.sh"
    return found


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def readme_anchors() -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in README.read_text().splitlines() if line.startswith("#")}
