"""The provisioning worker: claims due jobs and converges their Keycloak realms, retrying with backoff.

Rules of this module:
- `run_once()` is one pass: claim up to `batch` due jobs, provision each (render the template,
  converge the live realm to it through the admin API, read it back), record the outcome. Tests
  drive it directly; `run()` loops over it, waking on `notify()` (an action just committed a job)
  or every `poll` seconds, and never dies of an error.
- Backoff after the n-th failed attempt: `min(backoff_max, backoff_base * 2 ** (n - 1))` seconds; at
  `max_attempts` the job is `failed` and keeps its last error (`webhook provisioning retry` re-queues).
- A job is `done` only when the read-back realm shows no drift in the parts the service owns (the
  Hasura claim mappers above all) and `on_provisioned` (the JWKS publisher: the realm's signing key
  is in `/jwks`) has returned; a drift left after converging is an error like an outage.
- A permanent admin error (`AdminPermanentError`: 401/403, 431) fails the job at once with its
  message (it names the missing permission and the realm): no retry can fix configuration.
- Converging is idempotent, so running a job twice (a lease that expired under a slow worker) is
  harmless; a job is still never *claimed* by two workers at once (see `jobs.claim_due`).
- Times come from the injected wall clock; waits are asyncio timeouts on an event, never polling
  loops of sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.db.datastore import DataStore
from webhook.observability.metrics import Metrics
from webhook.provisioning.jobs import ClaimedJob, claim_due, finish, job_summary
from webhook.provisioning.keycloakadmin import AdminPermanentError, KeycloakAdmin, KeycloakAdminError
from webhook.provisioning.reconciler import RealmReconciler
from webhook.provisioning.templates import PortalUrls, RealmKind, load_template, render

BACKOFF_BASE_SECONDS: Final = 1.0
Outcome = Literal["done", "retry", "failed", "lost"]


@dataclass(frozen=True, slots=True)
class WorkerPolicy:
    """Timing of the worker (see the PROVISIONING_* variables)."""

    poll: float = 5.0
    max_attempts: int = 10
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_max: float = 300.0
    lease: float = 120.0
    batch: int = 10

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What one attempt at one job concluded."""

    realm: str
    outcome: Outcome
    attempts: int
    error: str | None = None


def default_worker_id() -> str:
    """host:pid:random, unique per worker object."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ProvisioningWorker:
    """Claims due provisioning jobs and converges their realms in Keycloak."""

    def __init__(
        self,
        store: DataStore,
        admin: KeycloakAdmin,
        *,
        policy: WorkerPolicy,
        urls: PortalUrls,
        log: Any,
        wall_clock: Callable[[], float] = time.time,
        worker_id: str | None = None,
        on_done: Callable[[str], None] | None = None,
        on_provisioned: Callable[[str], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.admin = admin
        self.policy = policy
        self.urls = urls
        self.worker_id = worker_id or default_worker_id()
        self._log = log
        self._wall_clock = wall_clock
        self._on_done = on_done
        self._on_provisioned = on_provisioned
        self.reconciler = RealmReconciler(admin)
        self._metrics = metrics
        self._templates: dict[RealmKind, dict[str, Any]] = {
            "tenant": load_template("tenant"),
            "event": load_template("event"),
        }
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self.outcomes: list[JobOutcome] = []

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._wall_clock(), dt.UTC)

    def notify(self) -> None:
        """Look for due jobs now (an action committed one)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim and provision one batch of due jobs; the number of jobs attempted."""
        jobs = await claim_due(
            self.store, worker=self.worker_id, now=self._now(), lease=self.policy.lease, limit=self.policy.batch
        )
        for job in jobs:
            await self._provision(job)
        return len(jobs)

    async def observe(self) -> None:
        """Set the job-table gauges (jobs by status, oldest unfinished job) from one grouped query."""
        if self._metrics is None:
            return
        summary = await job_summary(self.store, now=self._now())
        for status, gauge in self._metrics.provisioning_jobs.items():
            gauge.set(summary.counts.get(status, 0))
        self._metrics.provisioning_oldest_unfinished.set(summary.oldest_unfinished_seconds)

    async def _provision(self, job: ClaimedJob) -> None:
        error: str | None = None
        permanent = False
        result = ""
        try:
            representation = render(
                self._templates[job.kind], job.kind, tenant_id=job.tenant_id, event_id=job.event_id, urls=self.urls
            )
            converged = await self.reconciler.converge(representation, job.kind)
            result = converged.result
            if converged.drift:
                error = "read back: " + "; ".join(converged.drift)
            elif self._on_provisioned is not None:
                await self._on_provisioned(job.realm)
        except AdminPermanentError as exc:
            error, permanent = str(exc), True
        except KeycloakAdminError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or bad template: recorded and retried like an outage
            error = f"{type(exc).__name__} while provisioning"
            self._log.error("provisioning.unexpected_error", realm=job.realm, error=repr(exc)[:300])
        now = self._now()
        if error is None:
            kept = await finish(self.store, job, worker=self.worker_id, now=now)
            outcome: Outcome = "done" if kept else "lost"
            self._log.info("provisioning.done", realm=job.realm, result=result, attempts=job.attempts)
            if self._on_done is not None:
                self._on_done(job.realm)
        else:
            retry_at = None
            if job.attempts < self.policy.max_attempts and not permanent:
                retry_at = now + dt.timedelta(seconds=self.policy.backoff(job.attempts))
            kept = await finish(self.store, job, worker=self.worker_id, now=now, error=error, retry_at=retry_at)
            outcome = "lost" if not kept else ("retry" if retry_at is not None else "failed")
            self._log.warning(
                "provisioning.attempt_failed",
                realm=job.realm,
                attempts=job.attempts,
                error=error,
                permanent=permanent,
                next_attempt_at=retry_at.isoformat() if retry_at is not None else None,
            )
        await self._record(JobOutcome(job.realm, outcome, job.attempts, error))

    async def _record(self, outcome: JobOutcome) -> None:
        if self._metrics is not None:
            self._metrics.provisioning[outcome.outcome].inc()
        async with self._changed:
            self.outcomes.append(outcome)
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[list[JobOutcome]], bool]) -> None:
        """Return once `predicate(outcomes)` holds (tests bound it with a timeout)."""
        async with self._changed:
            await self._changed.wait_for(lambda: predicate(self.outcomes))

    async def run(self) -> None:
        """Loop until cancelled: run_once, then wait for `notify()` or the poll interval."""
        await self.store.ready.wait()
        self._log.info("provisioning.worker_started", worker=self.worker_id)
        while True:
            self._wake.clear()  # a notify() from here on wakes the wait below
            try:
                attempted = await self.run_once()
                await self.observe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: try again at the next poll
                attempted = 0
                self._log.warning("provisioning.claim_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            if attempted >= self.policy.batch:
                continue  # there may be more due right now
            try:
                async with asyncio.timeout(self.policy.poll):
                    await self._wake.wait()
            except TimeoutError:
                pass


__all__ = ["JobOutcome", "ProvisioningWorker", "WorkerPolicy", "default_worker_id"]
