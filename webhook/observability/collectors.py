"""The custom Prometheus collectors: series read at scrape time from the objects that hold the numbers.

Rules of this module:
- A collector reads plain numbers its source keeps (the hot path pays no lock and no label lookup)
  and turns them into metric families when Prometheus scrapes.
- Label values come from closed sets or from sets bounded by their source (prefetched realms from the
  configuration, API keys by the tracker's cap): no token can add a series here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.core.reasons import Reason

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
    "rate_limited",
)
LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REALM_STATES: Final = ("fresh", "stale", "loading", "failed", "missing")


@dataclass(frozen=True, slots=True)
class RealmHealth:
    """How one prefetched realm's keys stand (`webhook/auth/jwks.py` computes it, metrics expose it)."""

    realm: str
    state: str  # one of REALM_STATES
    failures: int  # failed fetches since the last successful one
    key_age: float | None  # seconds since the last successful fetch; None: never loaded
    usable_for: float  # seconds left before the keys stop being used (0: none usable)
    fetches: Mapping[str, int]  # fetch outcome -> count


class JwksHealthSource(Protocol):
    """What the per-realm JWKS metrics read from the cache."""

    def pinned_health(self) -> Iterable[RealmHealth]: ...


class JwksRealmCollector(Collector):
    """Per-realm JWKS series for the prefetched realms only: their names come from the configuration,
    so a token can never add a series here."""

    def __init__(self, source: JwksHealthSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        fetches = CounterMetricFamily(
            "webhook_jwks_realm_fetches",
            "JWKS fetches of each prefetched realm by outcome (all realms: webhook_jwks_fetches_total).",
            labels=["realm", "outcome"],
        )
        state = GaugeMetricFamily(
            "webhook_jwks_realm_state",
            "1 for the state each prefetched realm's keys are in (fresh, stale, loading, failed, missing).",
            labels=["realm", "state"],
        )
        failures = GaugeMetricFamily(
            "webhook_jwks_realm_fetch_failures",
            "Failed JWKS fetches of each prefetched realm since its last successful one.",
            labels=["realm"],
        )
        age = GaugeMetricFamily(
            "webhook_jwks_realm_key_age_seconds",
            "Seconds since each prefetched realm's keys were last fetched successfully (absent: never).",
            labels=["realm"],
        )
        usable = GaugeMetricFamily(
            "webhook_jwks_realm_usable_seconds",
            "Seconds left before each prefetched realm's keys stop being used (TTL + max stale - age; 0: none).",
            labels=["realm"],
        )
        for realm in self._source.pinned_health():
            for outcome in FETCH_OUTCOMES:
                fetches.add_metric([realm.realm, outcome], realm.fetches.get(outcome, 0))
            for name in REALM_STATES:
                state.add_metric([realm.realm, name], 1.0 if realm.state == name else 0.0)
            failures.add_metric([realm.realm], realm.failures)
            if realm.key_age is not None:
                age.add_metric([realm.realm], realm.key_age)
            usable.add_metric([realm.realm], realm.usable_for)
        yield from (fetches, state, failures, age, usable)


class TokenCacheStats(Protocol):
    """What the metrics read from the verified-token cache."""

    hits: int
    misses: int

    def sizes(self) -> tuple[int, int]: ...


class TokenCacheCollector(Collector):
    def __init__(self, cache: TokenCacheStats) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "webhook_token_cache_lookups", "Verified-token cache lookups by result.", labels=["result"]
        )
        lookups.add_metric(["hit"], self._cache.hits)
        lookups.add_metric(["miss"], self._cache.misses)
        yield lookups
        entries = GaugeMetricFamily("webhook_token_cache_entries", "Entries held, by kind.", labels=["kind"])
        good, bad = self._cache.sizes()
        entries.add_metric(["verified"], good)
        entries.add_metric(["rejected"], bad)
        yield entries


class RevocationStatsSource(Protocol):
    """What the metrics read from the revocation service (`webhook.revocation.service`)."""

    @property
    def stats(self) -> Any: ...

    @property
    def set(self) -> Any: ...

    def uncertain(self) -> bool: ...


class RevocationCollector(Collector):
    def __init__(self, service: RevocationStatsSource) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        received = CounterMetricFamily(
            "webhook_revocations_received",
            "Back-channel logout requests by result (taken, rejected, replayed, unavailable).",
            labels=["result"],
        )
        for result, count in service.stats.received.items():
            received.add_metric([result], count)
        yield received
        yield CounterMetricFamily(
            "webhook_revocations_applied",
            "Revocations this process started holding (its own, notified, or read on (re)connect).",
            value=service.stats.applied,
        )
        yield CounterMetricFamily(
            "webhook_revocation_hits",
            "Tokens refused because their session was revoked (or revocations were uncertain, fail closed).",
            value=service.set.hits,
        )
        yield GaugeMetricFamily(
            "webhook_revocation_uncertain",
            "1 while this process cannot be sure it holds every revocation (link down past the bound).",
            value=1 if service.uncertain() else 0,
        )


class TrackedApiKey(Protocol):
    @property
    def realm(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def expires_at(self) -> float: ...


class ApiKeyExpirySource(Protocol):
    """What the API-key expiry metrics read from the tracker (`webhook.observability.apikeyexpiry.ApiKeyExpiries`)."""

    @property
    def untracked(self) -> int: ...

    def tracked(self) -> Iterable[TrackedApiKey]: ...


class ApiKeyExpiryCollector(Collector):
    """One series per tracked API key: its labels are bounded by the tracker (tenant realms, template
    key names, a cap), so no token can add series without bound."""

    def __init__(self, source: ApiKeyExpirySource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        expiry = GaugeMetricFamily(
            "webhook_api_key_expiry_timestamp_seconds",
            "When each API key in use expires (epoch seconds; claim api_key.exp of its verified tokens).",
            labels=["realm", "key"],
        )
        for key in self._source.tracked():
            expiry.add_metric([key.realm, key.name], key.expires_at)
        yield expiry
        yield CounterMetricFamily(
            "webhook_api_keys_untracked",
            "API keys in use not tracked for expiry because the tracker was full of keys expiring sooner.",
            value=self._source.untracked,
        )


class DecisionStats:
    """Hook decision counters and the latency histogram as plain numbers (the hot path pays no lock).

    The service decides on one event-loop thread; a collector turns these into
    `webhook_decisions_total{result,reason}` and `webhook_decision_seconds` at scrape time.
    """

    __slots__ = ("allowed", "anonymous", "buckets", "rejected", "seconds")

    def __init__(self) -> None:
        self.allowed = 0
        self.anonymous = 0
        self.rejected: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        """Count one decision's duration."""
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds += seconds


class DecisionCollector(Collector):
    def __init__(self, stats: DecisionStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        decisions = CounterMetricFamily(
            "webhook_decisions", "Auth hook decisions by result and reason.", labels=["result", "reason"]
        )
        decisions.add_metric(["allow", ""], stats.allowed)
        decisions.add_metric(["anonymous", ""], stats.anonymous)
        for reason, count in stats.rejected.items():
            decisions.add_metric(["reject", reason.value], count)
        yield decisions
        cumulative, running = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), stats.buckets, strict=True):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "webhook_decision_seconds",
            "Time to decide one auth hook request.",
            buckets=cumulative,
            sum_value=stats.seconds,
        )
