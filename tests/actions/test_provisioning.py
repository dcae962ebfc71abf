"""Realm provisioning through the outbox: Keycloak down then up, crashes, leases, concurrent workers."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.actions.conftest import ADMIN_CLIENT, TENANT, ActionStack, FakeClock, StackFactory, random_uuid
from webhook.db.datastore import DataStore
from webhook.db.engine import migrate
from webhook.db.models import RealmProvisioningJob, Tenant
from webhook.observability.metrics import Metrics
from webhook.provisioning.jobs import claim_due, new_job
from webhook.provisioning.keycloakadmin import AdminCredentials, AdminPermanentError, KeycloakAdmin, KeycloakAdminError
from webhook.provisioning.templates import PortalUrls, hasura_claims, load_template, render
from webhook.provisioning.worker import ProvisioningWorker, WorkerPolicy
from webhook.settings import Settings
from webhook.testing.keycloak import FakeKeycloak

pytestmark = pytest.mark.anyio


def event_input() -> dict[str, Any]:
    return {"id": random_uuid(), "tenant_id": TENANT, "name": "Board election"}


async def create_event(stack: ActionStack) -> str:
    verdict = await stack.call("insertElectionEvent", event_input())
    assert verdict.outcome == "data", verdict.body
    realm: str = verdict.data["realm"]
    return realm


async def test_keycloak_down_then_up(stack: ActionStack) -> None:
    """Admin API down: the event is stored and its job waits (pending, error kept); once up, it completes."""
    stack.keycloak.set_admin_behaviour("down")
    realm = await create_event(stack)
    await stack.wait(lambda outcomes: [o.outcome for o in outcomes] == ["retry"])
    job = await stack.job(realm)
    assert job is not None and (job.status, job.attempts) == ("pending", 1)
    assert job.last_error == "token: HTTP 503 from the admin realm's token endpoint"
    assert realm not in stack.keycloak.admin_realms

    again = await stack.call("insertElectionEvent", {**event_input(), "id": realm.rsplit("-event-", 1)[1]})
    assert again.data["provisioning"] == "pending"  # the answer tells the job's current status

    stack.keycloak.set_admin_behaviour("ok")
    stack.clock.advance(WorkerPolicy().backoff(1) + 0.1)
    stack.worker.notify()
    await stack.provisioned(realm)
    job = await stack.job(realm)
    assert job is not None and (job.status, job.attempts, job.last_error) == ("done", 2, None)
    assert [c.status for c in stack.keycloak.realm_creations(realm)] == [201]


async def test_not_due_before_backoff(sqlite_stack: ActionStack) -> None:
    """A failed job is not retried before its backoff has passed."""
    sqlite_stack.keycloak.set_admin_behaviour("down")
    realm = await create_event(sqlite_stack)
    await sqlite_stack.wait(lambda outcomes: len(outcomes) == 1)
    sqlite_stack.keycloak.set_admin_behaviour("ok")
    assert await sqlite_stack.worker.run_once() == 0
    sqlite_stack.clock.advance(1.5)
    assert await sqlite_stack.worker.run_once() == 1
    job = await sqlite_stack.job(realm)
    assert job is not None and job.status == "done"


async def test_crash_between_commit_and_provisioning(make_stack: StackFactory) -> None:
    """The service stops after the commit, before provisioning; a new service on the database completes it once."""
    async with FakeKeycloak.start() as keycloak:
        keycloak.configure_admin(*ADMIN_CLIENT)
        keycloak.add_realm(f"tenant-{TENANT}")
        async with make_stack(keycloak=keycloak, PROVISIONING_WORKER="false") as first:
            realm = await create_event(first)
            assert first.app.runtime is not None and first.app.runtime.worker is None
        assert keycloak.admin_calls == []
        async with make_stack(keycloak=keycloak, prepare=False) as second:
            await second.worker.run_once()  # the lifespan's worker may have got there first: either is fine
            await second.provisioned(realm)
            job = await second.job(realm)
            assert job is not None and (job.status, job.attempts) == ("done", 1)
        assert [c.status for c in keycloak.realm_creations(realm)] == [201]


async def test_worker_task_killed_mid_provisioning(make_stack: StackFactory) -> None:
    """The worker dies holding a job (its task cancelled mid-call); after the lease, a new service finishes it once."""
    async with FakeKeycloak.start() as keycloak:
        keycloak.configure_admin(*ADMIN_CLIENT)
        keycloak.add_realm(f"tenant-{TENANT}")
        clock = FakeClock()
        async with make_stack(keycloak=keycloak, clock=clock) as first:
            keycloak.set_admin_behaviour("slow")
            realm = await create_event(first)
            runtime = first.app.runtime
            assert runtime is not None and runtime.worker_task is not None
            async with asyncio.timeout(10):  # the worker is now held inside its first admin call
                await keycloak.wait_for_request("POST", "/realms/master/protocol/openid-connect/token")
            runtime.worker_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await runtime.worker_task
            job = await first.job(realm)
            assert job is not None and job.status == "running"
        keycloak.set_admin_behaviour("ok")
        async with make_stack(keycloak=keycloak, prepare=False, clock=clock) as second:
            assert await second.worker.run_once() == 0  # the dead worker's lease still holds
            clock.advance(second.settings.provisioning_lease + 1)
            assert await second.worker.run_once() == 1
            job = await second.job(realm)
            assert job is not None and (job.status, job.attempts) == ("done", 2)
        assert [c.status for c in keycloak.realm_creations(realm)] == [201]


async def test_failed_after_max_attempts_then_retry(make_sqlite_stack: StackFactory) -> None:
    """After PROVISIONING_MAX_ATTEMPTS failures a job is failed with its last error; requeue makes it pending."""
    async with make_sqlite_stack(PROVISIONING_MAX_ATTEMPTS="2") as stack:
        stack.keycloak.set_admin_behaviour("down")
        realm = await create_event(stack)
        await stack.wait(lambda outcomes: len(outcomes) == 1)
        stack.clock.advance(5)
        assert await stack.worker.run_once() == 1
        assert [o.outcome for o in stack.worker.outcomes] == ["retry", "failed"]
        job = await stack.job(realm)
        assert job is not None and (job.status, job.attempts) == ("failed", 2)
        stack.clock.advance(3600)
        assert await stack.worker.run_once() == 0  # failed jobs are not retried on their own


async def test_backoff_is_exponential_and_capped() -> None:
    """Backoff doubles from 1 s per failed attempt up to PROVISIONING_BACKOFF_MAX_SECONDS."""
    policy = WorkerPolicy(backoff_max=10)
    assert [policy.backoff(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


async def test_two_workers_never_provision_the_same_job(db_env: dict[str, str]) -> None:
    """Two workers (own connections each) on 24 due jobs: each realm is created exactly once."""
    settings = Settings.from_environ({**db_env, "KEYCLOAK_URL": "http://127.0.0.1:1"})
    setup = DataStore.from_settings(settings)
    await migrate(setup.engine, schema=setup.schema)
    now = dt.datetime.now(dt.UTC)
    tenants = [random_uuid() for _ in range(24)]
    async with setup.transaction() as session:
        for tenant_id in tenants:
            session.add(Tenant(id=tenant_id, slug=tenant_id, created_at=now, updated_at=now, is_active=True))
        await session.flush()
        for tenant_id in tenants:
            realm = f"tenant-{tenant_id}"
            session.add(
                new_job(
                    kind="tenant", realm=realm, tenant_id=tenant_id, event_id=None, request_sha256="0" * 64, now=now
                )
            )
    await setup.dispose()
    async with FakeKeycloak.start() as keycloak, httpx.AsyncClient() as client:
        keycloak.configure_admin(*ADMIN_CLIENT)
        credentials = AdminCredentials(keycloak.url, "master", ADMIN_CLIENT[0], SecretStr(ADMIN_CLIENT[1]))
        stores = [DataStore.from_settings(settings) for _ in range(2)]
        workers = [
            ProvisioningWorker(
                store,
                KeycloakAdmin(client, credentials),
                policy=WorkerPolicy(batch=3),
                urls=PortalUrls(),
                log=_Quiet(),
                worker_id=f"worker-{n}",
            )
            for n, store in enumerate(stores)
        ]

        async def drain(worker: ProvisioningWorker) -> None:
            while await worker.run_once():
                pass

        try:
            await asyncio.gather(*(drain(w) for w in workers))
        finally:
            for store in stores:
                await store.dispose()
        posts = [c for c in keycloak.admin_calls if c.method == "POST" and c.path == "/admin/realms"]
        assert sorted(c.realm for c in posts if c.realm) == sorted(f"tenant-{t}" for t in tenants)
        assert all(c.status == 201 for c in posts)
        done = [o for w in workers for o in w.outcomes]
        assert sorted(o.realm for o in done) == sorted(f"tenant-{t}" for t in tenants)
        assert {o.outcome for o in done} == {"done"}


class _Quiet:
    def __getattr__(self, _name: str) -> Any:
        return lambda *args, **kwargs: None


async def test_claims_are_exclusive_under_concurrency(db_env: dict[str, str]) -> None:
    """Claims racing on the same due jobs hand each job to one claimer only."""
    settings = Settings.from_environ({**db_env, "KEYCLOAK_URL": "http://127.0.0.1:1"})
    stores = [DataStore.from_settings(settings) for _ in range(4)]
    try:
        await migrate(stores[0].engine, schema=stores[0].schema)
        now = dt.datetime.now(dt.UTC)
        tenant_id = random_uuid()
        async with stores[0].transaction() as session:
            session.add(Tenant(id=tenant_id, slug="t", created_at=now, updated_at=now, is_active=True))
            await session.flush()
            for n in range(12):
                session.add(
                    new_job(
                        kind="tenant",
                        realm=f"realm-{n}",
                        tenant_id=tenant_id,
                        event_id=None,
                        request_sha256="0" * 64,
                        now=now,
                    )
                )
        claims = await asyncio.gather(
            *(claim_due(store, worker=f"w{i}", now=now, lease=60, limit=5) for i, store in enumerate(stores))
        )
        taken = [job.realm for claim in claims for job in claim]
        assert len(taken) == len(set(taken)) == 12
    finally:
        for store in stores:
            await store.dispose()


async def test_admin_token_is_cached_and_renewed_after_401(sqlite_stack: ActionStack) -> None:
    """One client-credentials token serves many calls; a revoked token is replaced once and the call succeeds."""
    first = await create_event(sqlite_stack)
    await sqlite_stack.provisioned(first)
    second = await create_event(sqlite_stack)
    await sqlite_stack.provisioned(second)
    tokens = [c for c in sqlite_stack.keycloak.admin_calls if c.path.endswith("/token")]
    assert len(tokens) == 1
    sqlite_stack.keycloak.revoke_admin_tokens()
    third = await create_event(sqlite_stack)
    await sqlite_stack.provisioned(third)
    assert len([c for c in sqlite_stack.keycloak.admin_calls if c.path.endswith("/token")]) == 2


async def test_wrong_admin_credentials_fail_the_job_at_once(make_sqlite_stack: StackFactory) -> None:
    """A wrong admin client secret is a configuration error: the job is failed after one attempt, no retries."""
    async with make_sqlite_stack(KEYCLOAK_ADMIN_CLIENT_SECRET="wrong-secret") as stack:
        realm = await create_event(stack)
        await stack.wait(lambda outcomes: len(outcomes) == 1)
        job = await stack.job(realm)
        assert job is not None and (job.status, job.attempts) == ("failed", 1)
        assert job.last_error is not None and job.last_error.startswith("token: HTTP 401")
        assert "wrong-secret" not in job.last_error


async def test_existing_realm_without_mappers_is_converged_not_created(sqlite_stack: ActionStack) -> None:
    """A realm that exists without the Hasura mappers (made by hand) gets them; it is never POSTed again."""
    fields = event_input()
    realm = f"tenant-{TENANT}-event-{fields['id']}"
    keycloak = sqlite_stack.keycloak
    keycloak.configure_admin(*ADMIN_CLIENT, admin=True)  # the hand-made realm is not the client's own
    bare = render(load_template("event"), "event", tenant_id=TENANT, event_id=fields["id"])
    for client in bare["clients"]:
        client["protocolMappers"] = []
    keycloak.admin_api.import_realm({**bare, "enabled": False})
    assert (await sqlite_stack.call("insertElectionEvent", fields)).outcome == "data"
    await sqlite_stack.provisioned(realm)
    assert keycloak.realm_creations(realm) == []
    held = keycloak.admin_realms[realm]
    assert held["enabled"] is False  # the operator's
    for client in held["clients"]:
        names = {m["name"] for m in client["protocolMappers"]}
        assert set(hasura_claims("event")) <= names


async def test_conflict_on_create_reads_the_realm_instead() -> None:
    """A 409 on POST (another worker created the realm meanwhile) is "exists", not an error."""
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path))
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 60})
        return httpx.Response(409, json={"errorMessage": "Conflict detected. See logs for details"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        admin = KeycloakAdmin(client, AdminCredentials("http://kc", "master", "id", SecretStr("s")))
        assert await admin.create_realm({"realm": "tenant-x"}) == "exists"
    assert seen == [("POST", "/realms/master/protocol/openid-connect/token"), ("POST", "/admin/realms")]


async def test_admin_errors_carry_no_secret_or_body() -> None:
    """Admin API failures are KeycloakAdminError with the operation, realm and status only."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "secret-token-value", "expires_in": 60})
        return httpx.Response(500, text="java.lang.NullPointerException at org.keycloak...")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        admin = KeycloakAdmin(client, AdminCredentials("http://kc", "master", "id", SecretStr("client-secret")))
        with pytest.raises(KeycloakAdminError) as info:
            await admin.get_realm("tenant-x")
    assert str(info.value) == "get realm (tenant-x): HTTP 500"
    assert not isinstance(info.value, AdminPermanentError)


async def test_orphan_job_rows_never_exist(stack: ActionStack) -> None:
    """A refused action (validation, permission, conflict) leaves neither an event nor a job behind."""
    await stack.call("insertElectionEvent", {"tenant_id": TENANT, "name": ""})
    await stack.call("insertElectionEvent", {"tenant_id": random_uuid(), "name": "x"}, token=stack.token())
    assert await stack.count(RealmProvisioningJob) == 0


async def test_job_gauges_count_statuses_and_age_the_oldest_unfinished_job(stack: ActionStack) -> None:
    """The worker's job-table gauges: jobs by status, and how long the oldest unfinished job has waited."""
    stack.keycloak.set_admin_behaviour("down")
    realm = await create_event(stack)
    await stack.wait(lambda outcomes: len(outcomes) == 1)
    # an observer of its own (the stack's worker loop also observes, with its own timing)
    metrics = Metrics()
    credentials = AdminCredentials(stack.keycloak.url, "master", ADMIN_CLIENT[0], SecretStr(ADMIN_CLIENT[1]))
    observer = ProvisioningWorker(
        stack.store,
        KeycloakAdmin(stack.client, credentials),
        policy=WorkerPolicy(),
        urls=PortalUrls(),
        log=_Quiet(),
        wall_clock=lambda: stack.clock.now + 90,
        metrics=metrics,
    )
    await observer.observe()
    text = metrics.render().decode()
    assert 'webhook_provisioning_jobs{status="pending"} 1.0' in text
    assert 'webhook_provisioning_jobs{status="done"} 0.0' in text
    age = metrics.provisioning_oldest_unfinished._value.get()
    assert 90 <= age < 120

    stack.keycloak.set_admin_behaviour("ok")
    stack.clock.advance(WorkerPolicy().backoff(1) + 0.1)
    stack.worker.notify()
    await stack.provisioned(realm)
    await observer.observe()
    text = metrics.render().decode()
    assert 'webhook_provisioning_jobs{status="pending"} 0.0' in text
    assert 'webhook_provisioning_jobs{status="done"} 1.0' in text
    assert "webhook_provisioning_oldest_unfinished_seconds 0.0" in text
