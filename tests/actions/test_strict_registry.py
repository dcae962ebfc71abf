"""STRICT_REALM_REGISTRY: a pattern realm is trusted only once its tenant (or event) is in the database."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import httpx
import pytest

from tests.actions.conftest import OTHER, SUPER, TENANT, ActionStack, StackFactory, random_uuid
from webhook.app import create_app
from webhook.audit.record import MemorySink
from webhook.auth.realmregistry import DbRealmRegistry, MemoryRealmRegistry
from webhook.core.realms import Realm, parse_realm_name
from webhook.core.reasons import Reason, Rejected
from webhook.db.datastore import DataStore
from webhook.db.engine import make_engine
from webhook.observability.decisionlog import DecisionLog
from webhook.settings import Settings
from webhook.testing.hasura import HasuraStandIn
from webhook.testing.keycloak import FakeKeycloak
from webhook.testing.server import serve_asgi
from webhook.wiring import Dependencies

pytestmark = pytest.mark.anyio


def forged_iss(stack: ActionStack, realm: str) -> str:
    """A well-signed token of TENANT's realm whose iss names `realm` (pattern-valid, maybe unregistered)."""
    return stack.token(claims={"iss": f"{stack.keycloak.issuer_base}/realms/{realm}"})


async def test_unregistered_realm_is_refused_before_any_fetch(make_stack: StackFactory) -> None:
    """An unregistered tenant realm is unknown_realm with zero JWKS fetches; after insertTenant it is trusted."""
    async with make_stack(STRICT_REALM_REGISTRY="true") as stack:
        new_tenant = random_uuid()
        realm = f"tenant-{new_tenant}"
        verdict = await stack.hook(forged_iss(stack, realm))
        assert verdict.hook_status == 401
        assert b'"unknown_realm"' in verdict.hook_body
        assert stack.keycloak.jwks_fetches[realm] == 0

        created = await stack.call(
            "insertTenant",
            {"id": new_tenant, "slug": "newcomer"},
            token=stack.token(SUPER),
            required=("id", "realm", "provisioning"),
        )
        assert created.outcome == "data", created.body
        await stack.provisioned(realm)
        session = await stack.hook(stack.keycloak.mint(realm))
        assert session.outcome == "session", session.hook_body


async def test_registered_tenant_and_event_realms_are_trusted(make_sqlite_stack: StackFactory) -> None:
    """Registered tenants' realms work; an event realm works once its event exists, for its own tenant only."""
    async with make_sqlite_stack(STRICT_REALM_REGISTRY="true") as stack:
        assert (await stack.hook(stack.token())).outcome == "session"
        verdict = await stack.call("insertElectionEvent", {"tenant_id": TENANT, "name": "Strict"})
        assert verdict.outcome == "data", verdict.body
        await stack.provisioned(verdict.data["realm"])
        token = stack.keycloak.mint(verdict.data["realm"], default_role="user", roles=["user"])
        assert (await stack.hook(token)).outcome == "session"
        event_id = verdict.data["id"]
        other_tenants_event = f"tenant-{SUPER}-event-{event_id}"
        refused = await stack.hook(forged_iss(stack, other_tenants_event))
        assert b'"unknown_realm"' in refused.hook_body
        assert stack.keycloak.jwks_fetches[other_tenants_event] == 0


async def test_configured_realms_stay_trusted_without_rows(make_sqlite_stack: StackFactory) -> None:
    """The super-admin tenant's realm is trusted in strict mode even before its row exists."""
    async with make_sqlite_stack(STRICT_REALM_REGISTRY="true", tenants={}) as stack:
        assert (await stack.hook(stack.token(SUPER))).outcome == "session"
        refused = await stack.hook(stack.token(TENANT))
        assert b'"unknown_realm"' in refused.hook_body


async def test_pattern_mode_needs_no_registration(make_sqlite_stack: StackFactory) -> None:
    """Without strict mode a realm is trusted as soon as Keycloak has it, registered or not."""
    async with make_sqlite_stack(tenants={}) as stack:
        assert (await stack.hook(stack.token(TENANT))).outcome == "session"


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, event: str, **_fields: Any) -> None:
        self.warnings.append(event)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _realm(name: str) -> Realm:
    realm = parse_realm_name(name)
    assert realm is not None
    return realm


async def test_registry_caches_both_answers_with_their_ttls(sqlite_stack: ActionStack) -> None:
    """Answers are cached: registered for ttl, unregistered for negative_ttl; forget() drops one."""
    clock = _Clock()
    registry = DbRealmRegistry(sqlite_stack.store, ttl=100, negative_ttl=5, clock=clock, log=_Log())
    known, unknown = _realm(f"tenant-{TENANT}"), _realm(f"tenant-{random_uuid()}")
    assert await registry.is_registered(known) is True
    assert await registry.is_registered(unknown) is False
    assert registry.lookups == 2
    clock.now = 4
    await registry.is_registered(known)
    await registry.is_registered(unknown)
    assert registry.lookups == 2
    clock.now = 6
    await registry.is_registered(unknown)
    assert registry.lookups == 3
    registry.forget(known.name)
    await registry.is_registered(known)
    assert registry.lookups == 4


async def test_registry_is_bounded_and_single_flight(sqlite_stack: ActionStack) -> None:
    """At most max_entries realms of each answer are remembered, and unregistered names never evict a
    registered realm; concurrent lookups of one realm share one query."""
    registry = DbRealmRegistry(sqlite_stack.store, max_entries=2, clock=_Clock(), log=_Log())
    realm = _realm(f"tenant-{TENANT}")
    answers = await asyncio.gather(*(registry.is_registered(realm) for _ in range(20)))
    assert answers == [True] * 20 and registry.lookups == 1
    for _ in range(3):
        await registry.is_registered(_realm(f"tenant-{random_uuid()}"))
    await registry.is_registered(realm)
    assert registry.lookups == 4  # still cached: the made-up names went to their own LRU
    for name in (f"tenant-{SUPER}", f"tenant-{OTHER}"):
        await registry.is_registered(_realm(name))
    await registry.is_registered(realm)
    assert registry.lookups == 7  # evicted by two registered realms, looked up again


async def test_made_up_realms_cost_a_bounded_number_of_lookups(sqlite_stack: ActionStack) -> None:
    """1,000 made-up realm names at one instant cost `lookup_rate` queries (the bucket), the rest are
    refused unknown_realm at once; a realm seen registered stays registered while lookups are refused,
    even past its TTL; a new registered realm gets its lookup once the bucket refilled."""
    clock = _Clock()
    registry = DbRealmRegistry(sqlite_stack.store, ttl=10, lookup_rate=20, clock=clock, log=_Log())
    known = _realm(f"tenant-{TENANT}")
    assert await registry.is_registered(known) is True
    outcomes: list[object] = []
    for _ in range(1000):
        try:
            outcomes.append(await registry.is_registered(_realm(f"tenant-{random_uuid()}")))
        except Rejected as exc:
            outcomes.append((exc.reason, exc.detail))
    rate_refusal = (Reason.UNKNOWN_REALM, "realm registry: database lookup rate exceeded (strict registry)")
    refused = outcomes.count(rate_refusal)
    assert outcomes.count(False) == 19
    assert (registry.lookups, refused, registry.refused) == (20, 981, 981)
    clock.now = 11  # known's entry expired; the bucket (20/s) refilled by 220 tokens but holds 20 at most
    for _ in range(20):
        await registry.is_registered(_realm(f"tenant-{random_uuid()}"))
    assert await registry.is_registered(known) is True  # refused a lookup, still registered
    with pytest.raises(Rejected):
        await registry.is_registered(_realm(f"tenant-{SUPER}"))  # never seen: cannot tell
    clock.now = 11.05  # one token back
    assert await registry.is_registered(_realm(f"tenant-{SUPER}")) is True
    assert registry.lookups == 41


async def test_registry_lookups_in_flight_are_capped(sqlite_stack: ActionStack) -> None:
    """Concurrent lookups of distinct realms: at most max_concurrent queries run, the rest are refused
    unknown_realm at once, without queueing."""
    registry = DbRealmRegistry(sqlite_stack.store, max_concurrent=4, clock=_Clock(), log=_Log())
    realms = [_realm(f"tenant-{random_uuid()}") for _ in range(20)]
    answers = await asyncio.gather(*(registry.is_registered(r) for r in realms), return_exceptions=True)
    assert answers[:4] == [False] * 4
    assert all(isinstance(a, Rejected) and a.reason is Reason.UNKNOWN_REALM for a in answers[4:])
    assert registry.lookups == 4


async def test_registry_database_error(closed_port: int) -> None:
    """Database down: a realm never seen is refused (unknown_realm), never trusted by default."""
    store = DataStore(make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/x"))
    log = _Log()
    registry = DbRealmRegistry(store, clock=_Clock(), log=log, always={f"tenant-{SUPER}"})
    try:
        with pytest.raises(Rejected) as info:
            await registry.is_registered(_realm(f"tenant-{TENANT}"))
        assert info.value.reason is Reason.UNKNOWN_REALM
        assert log.warnings == ["realm_registry.lookup_failed"]
        assert await registry.is_registered(_realm(f"tenant-{SUPER}")) is True
        assert await registry.is_registered(Realm("platform-admin", None, None)) is True
    finally:
        await store.dispose()


async def test_memory_registry_fake() -> None:
    """The in-memory fake registers names and counts lookups; extra realms are always registered."""
    registry = MemoryRealmRegistry({f"tenant-{TENANT}"})
    assert await registry.is_registered(_realm(f"tenant-{TENANT}")) is True
    assert await registry.is_registered(_realm(f"tenant-{SUPER}")) is False
    registry.add(f"tenant-{SUPER}")
    assert await registry.is_registered(_realm(f"tenant-{SUPER}")) is True
    assert await registry.is_registered(Realm("platform-admin", None, None)) is True
    assert registry.lookups == 4


async def test_injected_registry_guards_the_hook() -> None:
    """A registry injected through Dependencies is asked before any JWKS fetch (the fake: MemoryRealmRegistry)."""
    async with FakeKeycloak.start() as keycloak:
        registered, unregistered = keycloak.add_realm(f"tenant-{TENANT}"), keycloak.add_realm(f"tenant-{SUPER}")
        registry = MemoryRealmRegistry({registered.name})
        deps = Dependencies(audit=MemorySink(), decision_log=DecisionLog(io.BytesIO()), realm_registry=registry)
        app = create_app(Settings.from_environ({"KEYCLOAK_URL": keycloak.url}), deps)
        async with serve_asgi(app, lifespan="on") as running, httpx.AsyncClient() as client:
            hasura = HasuraStandIn(f"{running.url}/hasura/auth", mode="POST", client=client)
            ok = await hasura.authenticate({"Authorization": f"Bearer {keycloak.mint(registered.name)}"})
            refused = await hasura.authenticate({"Authorization": f"Bearer {keycloak.mint(unregistered.name)}"})
        assert ok.outcome == "session"
        assert b'"unknown_realm"' in refused.hook_body
        assert keycloak.jwks_fetches[unregistered.name] == 0
        assert registry.lookups == 2
