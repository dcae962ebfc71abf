"""Prometheus metrics, one registry per app (so tests can run several apps in one process).

Rules of this module:
- Label values come from closed sets only (results, `Reason` codes, fetch outcomes): a token can
  never create a new time series.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook.reasons import Reason

FETCH_OUTCOMES: Final = (
    "ok",
    "not_found",
    "http_error",
    "timeout",
    "network_error",
    "too_large",
    "invalid",
    "redirect",
    "capacity",
)
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The service's metrics. Counters are pre-created for every label value, so scrapes are stable."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decisions = Counter(
            "webhook_decisions_total",
            "Auth hook decisions by result and reason.",
            ["result", "reason"],
            registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "webhook_jwks_fetches_total", "JWKS fetches by outcome.", ["outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "webhook_decision_seconds",
            "Time to decide one auth hook request.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.realms_cached = Gauge(
            "webhook_jwks_realms_cached", "Realms currently held in the JWKS cache.", registry=self.registry
        )
        self.allowed = self.decisions.labels("allow", "")
        self.anonymous = self.decisions.labels("anonymous", "")
        self.rejected = {reason: self.decisions.labels("reject", reason.value) for reason in Reason}
        self.fetch = {outcome: self.jwks_fetches.labels(outcome) for outcome in FETCH_OUTCOMES}

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
