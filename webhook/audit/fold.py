"""How rejection records fold into audit rows, and the bound on rows written per time bucket. Pure.

Rules of this module:
- A rejection whose token's signature verified (`VERIFIED_REASONS`: expired, role_not_allowed...)
  folds by token: one row per (token SHA-256, reason), whatever the number of repeats.
- Every other rejection (no token, malformed, unknown issuer, bad signature...: nothing proves who
  made the token, so distinct garbage is free to produce) folds by (reason, source, realm, client IP,
  time bucket of `FoldPolicy.bucket_seconds`): one row per client and realm per bucket, with the
  number of occurrences and an approximate count of distinct tokens (`DistinctSketch`).
- At most `rows_per_bucket` distinct rows are written per bucket (new or updated, both kinds);
  past it, records fold into one `overflow` row per (reason, source, bucket): they are still
  counted (occurrences, distinct tokens), only their client, realm and claims are not kept.
- In memory, before the writer: at most `pending_keys` distinct keys wait; past it, records fold
  into the overflow key of their bucket, so memory is bounded and nothing is dropped.
- Every string that reaches a row goes through `webhook.core.safetext` (NUL, lone surrogates, length).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.audit.record import CLAIM_CHARS, DETAIL_CHARS, FORWARDED_CHARS, RejectionRecord
from webhook.core.realms import parse_realm_name
from webhook.core.reasons import Reason
from webhook.core.safetext import safe_optional, safe_text

REALM_CHARS: Final = 100
MAX_BUCKET_STATES: Final = 4
VERIFIED_REASONS: Final = frozenset(
    {
        Reason.EXPIRED,
        Reason.NOT_YET_VALID,
        Reason.WRONG_TOKEN_TYPE,
        Reason.AUDIENCE_NOT_ALLOWED,
        Reason.AZP_NOT_ALLOWED,
        Reason.CLAIMS_INVALID,
        Reason.REALM_MISMATCH,
        Reason.ROLE_NOT_ALLOWED,
    }
)
# Columns that describe the latest occurrence of a folded row (the rest is fixed by the key).
CONTEXT_COLUMNS: Final = (
    "client_ip_untrusted",
    "user_agent_untrusted",
    "request_id",
    "detail",
    "hook_mode",
    "token_sha256",
    "iss",
    "kid",
    "alg",
    "sub",
    "azp",
    "jti",
    "kind",
)
Fold = Literal["token", "bucket", "overflow"]
PendingKey = tuple[str | int, ...]
RowKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class FoldPolicy:
    """Bucket width and bounds (AUDIT_FOLD_BUCKET_SECONDS, AUDIT_MAX_ROWS_PER_BUCKET, AUDIT_QUEUE_SIZE)."""

    bucket_seconds: int = 60
    rows_per_bucket: int = 600
    pending_keys: int = 10000
    sketch_size: int = 64


def bucket_of(at: float, seconds: int) -> int:
    """The bucket (its start, in epoch seconds) a time falls in."""
    return int(at // seconds) * seconds


def token_hash_value(token_sha256: str) -> int:
    """The first 64 bits of a token's SHA-256, for the distinct sketches."""
    return int(token_sha256[:16], 16)


class DistinctSketch:
    """Approximate count of distinct 64-bit hashes in bounded memory (adaptive sampling).

    Keeps the hashes below 2**(64 - level); when more than `capacity` are kept the level rises and
    half are let go. Exact below `capacity` distinct values; about 1/sqrt(capacity) relative error
    above. Two sketches merge into the sketch of the union.
    """

    __slots__ = ("capacity", "level", "values")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.level = 0
        self.values: set[int] = set()

    def add(self, value: int) -> None:
        """Count one hash."""
        if value >> (64 - self.level) == 0:
            self.values.add(value)
            if len(self.values) > self.capacity:
                self._shrink()

    def merge(self, other: DistinctSketch) -> None:
        """Become the sketch of both sets."""
        self.level = max(self.level, other.level)
        limit = 64 - self.level
        self.values = {v for v in (*self.values, *other.values) if v >> limit == 0}
        if len(self.values) > self.capacity:
            self._shrink()

    def _shrink(self) -> None:
        while len(self.values) > self.capacity:
            self.level += 1
            limit = 64 - self.level
            self.values = {v for v in self.values if v >> limit == 0}

    def estimate(self) -> int:
        """The approximate number of distinct hashes added."""
        return len(self.values) << self.level


class Aggregate:
    """Records of one pending key: how many, the earliest and the latest, their distinct tokens."""

    __slots__ = ("count", "first", "last", "sketch")

    def __init__(self, record: RejectionRecord, sketch: DistinctSketch | None) -> None:
        self.count = 0
        self.first = record
        self.last = record
        self.sketch = sketch

    def add(self, record: RejectionRecord) -> None:
        """Fold one more record in."""
        self.count += 1
        if record.at >= self.last.at:
            self.last = record
        elif record.at < self.first.at:
            self.first = record
        sketch, digest = self.sketch, record.token_sha256
        if sketch is not None and digest is not None:
            sketch.add(token_hash_value(digest))


def pending_key(record: RejectionRecord, bucket_seconds: int) -> PendingKey:
    """The in-memory key a record folds into (see the module rules)."""
    if record.token_sha256 is not None and record.reason in VERIFIED_REASONS:
        return ("token", record.token_sha256, record.reason.value)
    return (
        "bucket",
        record.reason.value,
        record.source,
        record.realm or "",
        record.client_ip or "",
        bucket_of(record.at, bucket_seconds),
    )


def overflow_key(record: RejectionRecord, bucket_seconds: int) -> PendingKey:
    """The key of the overflow row a record folds into past a bound."""
    return ("overflow", record.reason.value, record.source, bucket_of(record.at, bucket_seconds))


class PendingFolds:
    """Records folded in memory until the writer takes them; at most `pending_keys` keys (+ overflow).

    Not thread-safe by itself: the sink holds a lock around `add` and `take`.
    """

    __slots__ = ("_bucket_seconds", "_capacity", "_folds", "_sketch_size", "overflowed", "records")

    def __init__(self, policy: FoldPolicy) -> None:
        self._bucket_seconds = policy.bucket_seconds
        self._capacity = policy.pending_keys
        self._sketch_size = policy.sketch_size
        self._folds: dict[PendingKey, Aggregate] = {}
        self.records = 0  # records folded in and not taken yet
        self.overflowed = 0  # records folded into an overflow key because the keys were at capacity

    def __len__(self) -> int:
        return len(self._folds)

    def add(self, record: RejectionRecord) -> None:
        """Fold `record` in: O(1), no IO."""
        folds = self._folds
        key = pending_key(record, self._bucket_seconds)
        aggregate = folds.get(key)
        if aggregate is None:
            if len(folds) >= self._capacity:
                key = overflow_key(record, self._bucket_seconds)
                aggregate = folds.get(key)
                self.overflowed += 1
            if aggregate is None:
                sketch = None if key[0] == "token" else DistinctSketch(self._sketch_size)
                aggregate = folds[key] = Aggregate(record, sketch)
        aggregate.add(record)
        self.records += 1

    def take(self) -> dict[PendingKey, Aggregate]:
        """Everything folded so far; the container starts empty again."""
        folds, self._folds = self._folds, {}
        self.records = 0
        return folds


def _hash_key(key: PendingKey) -> str:
    material = "\0".join(str(part) for part in key)
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def _time(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def row_of(aggregate: Aggregate, fold: Fold, fold_key: str, distinct: int) -> dict[str, Any]:
    """The column values of one folded row; every copied string made safe (module rules)."""
    last, first = aggregate.last, aggregate.first
    keep_origin = fold != "overflow"
    realm = last.realm if keep_origin else None
    parsed = parse_realm_name(realm) if realm is not None else None
    facts = last.facts
    keep_claims = keep_origin

    def claim(value: str | None) -> str | None:
        return safe_optional(value, CLAIM_CHARS) if keep_claims else None

    return {
        "fold_key": fold_key,
        "reason": last.reason.value,
        "fold": fold,
        "token_sha256": last.token_sha256 if keep_origin else None,
        "realm": safe_optional(realm, REALM_CHARS),
        "tenant_id": parsed.tenant_id if parsed is not None else None,
        "iss": claim(facts.iss),
        "kid": claim(facts.kid),
        "alg": claim(facts.alg),
        "sub": claim(facts.sub),
        "azp": claim(facts.azp),
        "jti": claim(facts.jti),
        "kind": safe_optional(facts.kind, 16) if keep_claims else None,
        "client_ip_untrusted": safe_optional(last.client_ip, FORWARDED_CHARS) if keep_origin else None,
        "user_agent_untrusted": safe_optional(last.user_agent, FORWARDED_CHARS) if keep_origin else None,
        "hook_mode": safe_text(last.hook_mode, 8),
        "source": last.source,
        "request_id": safe_text(last.request_id, FORWARDED_CHARS),
        "detail": safe_text(last.detail, DETAIL_CHARS),
        "first_seen": _time(first.at),
        "last_seen": _time(last.at),
        "occurrences": aggregate.count,
        "distinct_tokens": distinct,
    }


def merge_rows(held: dict[str, Any], row: Mapping[str, Any]) -> None:
    """Fold `row` into `held` (same key): the same rule the upsert applies in the database."""
    held["occurrences"] += row["occurrences"]
    held["distinct_tokens"] = max(held["distinct_tokens"], row["distinct_tokens"])
    held["first_seen"] = min(held["first_seen"], row["first_seen"])
    if row["last_seen"] > held["last_seen"]:
        held["last_seen"] = row["last_seen"]
        for column in CONTEXT_COLUMNS:
            held[column] = row[column]


class _BucketState:
    __slots__ = ("admitted", "sketches")

    def __init__(self) -> None:
        self.admitted: set[PendingKey] = set()
        self.sketches: dict[PendingKey, DistinctSketch] = {}


class BucketLedger:
    """The writer's memory of the recent buckets: which keys got a row, and their distinct sketches."""

    def __init__(self, policy: FoldPolicy) -> None:
        self.policy = policy
        self._states: dict[int, _BucketState] = {}

    def _state(self, bucket: int) -> _BucketState:
        state = self._states.get(bucket)
        if state is None:
            if len(self._states) >= MAX_BUCKET_STATES:
                del self._states[min(self._states)]
            state = self._states[bucket] = _BucketState()
        return state

    def _distinct(self, state: _BucketState, key: PendingKey, aggregate: Aggregate, digest: str | None) -> int:
        sketch = state.sketches.get(key)
        if sketch is None:
            sketch = state.sketches[key] = DistinctSketch(self.policy.sketch_size)
        if aggregate.sketch is not None:
            sketch.merge(aggregate.sketch)
        elif digest is not None:
            sketch.add(token_hash_value(digest))
        return sketch.estimate()

    def rows(self, folds: Mapping[PendingKey, Aggregate]) -> tuple[list[dict[str, Any]], int]:
        """The rows to write for `folds` (one per row key), and how many records went to overflow rows."""
        seconds, budget = self.policy.bucket_seconds, self.policy.rows_per_bucket
        out: dict[RowKey, dict[str, Any]] = {}
        overflowed = 0
        for pending, aggregate in folds.items():
            key, kind = pending, pending[0]
            bucket = bucket_of(aggregate.first.at, seconds)
            state = self._state(bucket)
            if kind != "overflow" and key not in state.admitted:
                if len(state.admitted) < budget:
                    state.admitted.add(key)
                else:
                    overflowed += aggregate.count
                    kind, key = "overflow", overflow_key(aggregate.first, seconds)
            if kind == "token":
                row = row_of(aggregate, "token", str(key[1]), 1)
            else:
                digest = aggregate.first.token_sha256 if aggregate.sketch is None else None
                distinct = self._distinct(state, key, aggregate, digest)
                row = row_of(aggregate, "bucket" if kind == "bucket" else "overflow", _hash_key(key), distinct)
            held = out.get((row["fold_key"], row["reason"]))
            if held is None:
                out[(row["fold_key"], row["reason"])] = row
            else:
                merge_rows(held, row)
        return list(out.values()), overflowed


def fold_records(
    records: Iterable[RejectionRecord], policy: FoldPolicy | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Rows for `records` folded from scratch (a fresh ledger): for the CLI, tests and benchmarks."""
    policy = policy or FoldPolicy()
    pending = PendingFolds(policy)
    for record in records:
        pending.add(record)
    return BucketLedger(policy).rows(pending.take())


__all__ = [
    "CONTEXT_COLUMNS",
    "VERIFIED_REASONS",
    "Aggregate",
    "BucketLedger",
    "DistinctSketch",
    "Fold",
    "FoldPolicy",
    "PendingFolds",
    "bucket_of",
    "fold_records",
    "merge_rows",
    "overflow_key",
    "pending_key",
    "row_of",
]
