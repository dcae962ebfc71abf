"""Prometheus metrics, one registry per app (so tests can run several apps in one process).

Rules of this module:
- Label values come from closed sets only (results, `Reason` codes, fetch outcomes): a token can
  never create a new time series. Realm labels are the one open set: `RealmLabels` bounds them and
  gives one only to realms whose keys verified something.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook.core.realms import parse_realm_name
from webhook.observability.collectors import (
    FETCH_OUTCOMES,
    ApiKeyExpiryCollector,
    ApiKeyExpirySource,
    DecisionCollector,
    DecisionStats,
    JwksHealthSource,
    JwksRealmCollector,
    RevocationCollector,
    RevocationStatsSource,
    TokenCacheCollector,
    TokenCacheStats,
)

AUDIT_BATCH_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
AUDIT_DROP_CAUSES: Final = ("queue_full", "journal_full", "refused", "shutdown")
AUDIT_LIMITS: Final = ("pending_keys", "rows_per_bucket", "bucket_seconds", "journal_max_bytes")
PROVISIONING_OUTCOMES: Final = ("done", "retry", "failed", "lost")
FANOUT_LAG_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
PROVISIONING_STATUSES: Final = ("pending", "running", "done", "failed")
MAX_REALM_LABELS: Final = 100
OTHER_REALM: Final = "other"
NO_REALM: Final = "none"


class Metrics:
    """The service's metrics. Counters are pre-created for every label value, so scrapes are stable."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.decision = DecisionStats()
        self.registry.register(DecisionCollector(self.decision))
        self.jwks_fetches = Counter(
            "webhook_jwks_fetches_total", "JWKS fetches by outcome.", ["outcome"], registry=self.registry
        )
        self.realms_cached = Gauge(
            "webhook_jwks_realms_cached", "Realms currently held in the JWKS cache.", registry=self.registry
        )
        self.fetch = {outcome: self.jwks_fetches.labels(outcome) for outcome in FETCH_OUTCOMES}
        self.rejections = Counter(
            "webhook_rejections_total",
            "Rejections by reason and realm (realm: a configured realm or one whose keys verified a "
            "signature, up to the label cap; else 'other'; 'none' when no realm was resolved).",
            ["reason", "realm"],
            registry=self.registry,
        )
        self.audit_queue_depth = Gauge(
            "webhook_audit_queue_depth", "Rejection records waiting for the audit writer.", registry=self.registry
        )
        self.audit_batch_seconds = Histogram(
            "webhook_audit_batch_seconds",
            "Time to write one audit batch (one transaction), failed attempts included.",
            buckets=AUDIT_BATCH_BUCKETS,
            registry=self.registry,
        )
        audit_dropped = Counter(
            "webhook_audit_dropped_total",
            "Rejection records never written: queue_full (database down, no journal), journal_full (past "
            "AUDIT_JOURNAL_MAX_BYTES), refused (a row the database refused, isolated), shutdown (after close).",
            ["cause"],
            registry=self.registry,
        )
        self.audit_dropped = {cause: audit_dropped.labels(cause) for cause in AUDIT_DROP_CAUSES}
        self.audit_written = Counter(
            "webhook_audit_written_total",
            "Rejection records written to the audit table (folded repeats count one each).",
            registry=self.registry,
        )
        self.audit_write_errors = Counter(
            "webhook_audit_write_errors_total",
            "Failed audit batch writes (each is retried with backoff).",
            registry=self.registry,
        )
        self._audit_durability_metrics()
        self.actions = Counter(
            "webhook_actions_total",
            "Action calls by action (registered names, else 'unknown') and result code ('ok' or an error code).",
            ["action", "code"],
            registry=self.registry,
        )
        provisioning = Counter(
            "webhook_provisioning_attempts_total",
            "Realm provisioning attempts by outcome (done, retry, failed, lost: the lease was taken over).",
            ["outcome"],
            registry=self.registry,
        )
        self.provisioning = {outcome: provisioning.labels(outcome) for outcome in PROVISIONING_OUTCOMES}
        provisioning_jobs = Gauge(
            "webhook_provisioning_jobs",
            "Realm provisioning jobs in the database by status (the whole table, as last seen by this "
            "process's worker: every replica reports the same numbers).",
            ["status"],
            registry=self.registry,
        )
        self.provisioning_jobs = {status: provisioning_jobs.labels(status) for status in PROVISIONING_STATUSES}
        self.provisioning_oldest_unfinished = Gauge(
            "webhook_provisioning_oldest_unfinished_seconds",
            "Age of the oldest pending or running provisioning job (since it was created); 0 when none.",
            registry=self.registry,
        )

    def watch_jwks(self, source: JwksHealthSource) -> None:
        """Expose the prefetched realms' JWKS health (state, failures, key age), read at scrape time."""
        self.registry.register(JwksRealmCollector(source))

    def _audit_durability_metrics(self) -> None:
        """The audit writer's journal, bounds, lag and schema (issue 13); gauges are read at scrape time."""
        registry = self.registry
        self.audit_overflow = Counter(
            "webhook_audit_overflow_total",
            "Rejection records folded into an overflow row (reason, source, bucket) because a bound was "
            "reached (AUDIT_MAX_ROWS_PER_BUCKET rows in the bucket, or AUDIT_QUEUE_SIZE keys waiting).",
            registry=registry,
        )
        self.audit_refused_rows = Counter(
            "webhook_audit_refused_rows_total",
            "Audit rows the database refused (isolated from their batch; the rest was written).",
            registry=registry,
        )
        self.audit_journaled = Counter(
            "webhook_audit_journaled_total",
            "Rejection records spilled to the local journal while the database could not take them.",
            registry=registry,
        )
        self.audit_replayed = Counter(
            "webhook_audit_replayed_total", "Rejection records replayed from the journal.", registry=registry
        )
        self.audit_journal_bytes = Gauge(
            "webhook_audit_journal_bytes", "Bytes held in the audit journal.", registry=registry
        )
        self.audit_journal_records = Gauge(
            "webhook_audit_journal_records", "Rejection records waiting in the audit journal.", registry=registry
        )
        self.audit_lag_seconds = Gauge(
            "webhook_audit_lag_seconds",
            "Seconds since the audit writer last had nothing waiting for the database (0: caught up).",
            registry=registry,
        )
        limits = Gauge("webhook_audit_limit", "The audit writer's configured bounds.", ["limit"], registry=registry)
        self.audit_limits = {name: limits.labels(name) for name in AUDIT_LIMITS}
        schema = Gauge(
            "webhook_audit_schema",
            "1 for the audit database schema's current state (ok, empty, behind, unversioned, unknown, "
            "damaged, unchecked); see /readyz audit_detail for what to do.",
            ["state"],
            registry=registry,
        )
        self.audit_schema = {
            state: schema.labels(state)
            for state in ("ok", "empty", "behind", "unversioned", "unknown", "damaged", "unchecked")
        }

    def watch_token_cache(self, cache: TokenCacheStats) -> None:
        """Expose the verified-token cache's hit/miss counts and sizes, read at scrape time (no hot-path cost)."""
        self.registry.register(TokenCacheCollector(cache))

    def watch_revocations(self, service: RevocationStatsSource) -> None:
        """Expose the session revocation metrics (issue 15); the hot path only bumps plain ints."""
        lag = Histogram(
            "webhook_revocation_fanout_lag_seconds",
            "Time from a revocation being stored (any replica) to this process holding it.",
            buckets=FANOUT_LAG_BUCKETS,
            registry=self.registry,
        )
        service.stats.lag_observer = lag.observe
        self.registry.register(RevocationCollector(service))

    def watch_api_keys(self, source: ApiKeyExpirySource) -> None:
        """Expose the expiries of the API keys in use (`webhook.observability.apikeyexpiry`), read at scrape time."""
        self.registry.register(ApiKeyExpiryCollector(source))

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class RealmLabels:
    """Bounded realm label values for `webhook_rejections_total`.

    A realm gets its own label only once a signature verified with its keys (`verified`, called by
    the verifier) or when the configuration names it (prefetched and extra realms, labelled at
    start), and while fewer than `cap` realms have one; every other realm is `other`, so tokens
    naming made-up realms never take a label, let alone a real realm's. No resolved realm: `none`.
    """

    __slots__ = ("_cap", "_extra", "_labels")

    def __init__(self, extra_realms: Iterable[str], known: Iterable[str] = (), cap: int = MAX_REALM_LABELS) -> None:
        self._extra = frozenset(extra_realms)
        self._cap = cap
        self._labels: set[str] = set()
        for realm in (*known, *sorted(self._extra)):
            self.verified(realm)

    def verified(self, realm: str) -> None:
        """`realm`'s keys verified a signature: give it a label while under the cap."""
        if realm in self._labels or len(self._labels) >= self._cap:
            return
        if realm in self._extra or parse_realm_name(realm) is not None:
            self._labels.add(realm)

    def label(self, realm: str | None) -> str:
        """The label value for `realm`."""
        if realm is None:
            return NO_REALM
        return realm if realm in self._labels else OTHER_REALM
