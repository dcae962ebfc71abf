"""The builders the composition root calls: each turns the settings and the injected dependencies
into one part of the running service (JWKS cache and verifier, realm registry, revocations, the
provisioning worker, the API-key policy, the HTTP client).

Rules of this module:
- Pure assembly: a builder constructs and returns; it starts nothing except where its name says so
  (`start_revocations`, `start_keys`), and then only inside the lifespan's exit stack it is given.
- `Dependencies` is the one place tests and the dev mode inject fakes; `Runtime` is what the lifespan
  built, reachable for health checks and tests.
- Imported only by `webhook.app` (and by the tests and tools that build one part on its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from webhook import __version__
from webhook.actions.apikey import ApiKeyPolicy
from webhook.actions.registry import ActionRegistry
from webhook.audit.record import AuditSink
from webhook.auth.jwks import JwksCache
from webhook.auth.jwksfetch import CachePolicy, JwksFetcher
from webhook.auth.jwkspublish import PublishedRealms
from webhook.auth.realmregistry import DbRealmRegistry
from webhook.auth.tokencache import VerifiedTokenCache
from webhook.auth.verifier import Verifier
from webhook.core.realms import RealmPolicy, RealmRegistry, tenant_realm_name
from webhook.core.token import ClaimsPolicy
from webhook.db.datastore import DataStore
from webhook.observability.apikeyexpiry import ApiKeyExpiries
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.logs import get_logger
from webhook.observability.metrics import Metrics, RealmLabels
from webhook.provisioning.apikeyclient import name_allowed
from webhook.provisioning.apikeys import ApiKeyService
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin
from webhook.provisioning.templates import PortalUrls
from webhook.provisioning.worker import ProvisioningWorker, WorkerPolicy
from webhook.revocation.service import RevocationPolicy, RevocationService
from webhook.revocation.userrevoker import UserRevoker
from webhook.settings import Settings


@dataclass(slots=True)
class Dependencies:
    """Replaceable collaborators. Defaults are the real ones."""

    http_client: httpx.AsyncClient | None = None
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    audit: AuditSink | None = None  # None: the database sink built from the settings
    metrics: Metrics = field(default_factory=Metrics)
    decision_log: DecisionLog | None = None
    realm_registry: RealmRegistry | None = None  # None: the database registry when STRICT_REALM_REGISTRY
    actions: ActionRegistry | None = None  # None: every action of the service
    worker_id: str | None = None  # None: host:pid:random
    revocations: RevocationService | None = None  # None: built from the store when REVOCATIONS


@dataclass(slots=True)
class Runtime:
    """What the lifespan built; reachable from the app for health checks and tests."""

    settings: Settings
    cache: JwksCache
    verifier: Verifier
    metrics: Metrics
    realms: RealmPolicy
    tokens: VerifiedTokenCache
    labels: RealmLabels
    prefetch: asyncio.Task[int] | None = None
    audit: AuditSink | None = None
    store: DataStore | None = None
    worker: ProvisioningWorker | None = None
    worker_task: asyncio.Task[None] | None = None
    published: PublishedRealms | None = None
    revocations: RevocationService | None = None


def start_keys(stack: contextlib.AsyncExitStack, settings: Settings, runtime: Runtime, store: DataStore | None) -> None:
    """The JWKS cache's background work: the first load, the refresher and the `/jwks` publisher."""
    cache = runtime.cache
    stack.push_async_callback(cache.close)
    loop = asyncio.get_running_loop()
    # First load of the pinned realms runs in the background: the service answers (and
    # /readyz says "not ready") while Keycloak is slow or down at start.
    runtime.prefetch = loop.create_task(cache.refresh_due())
    refresher = loop.create_task(cache.run_refresher(max(1.0, min(float(settings.jwks_retry), settings.jwks_ttl / 10))))
    stack.callback(refresher.cancel)
    stack.callback(runtime.prefetch.cancel)
    runtime.published = published_realms(settings, runtime, store)
    publisher = loop.create_task(runtime.published.run(), name="jwks publisher")
    stack.push_async_callback(cancel, publisher)


def needs_store(settings: Settings) -> bool:
    """Whether the actions, the worker, the strict registry or the revocations need the database."""
    return (
        settings.actions_secret is not None
        or settings.provisioning_worker
        or settings.strict_realm_registry
        or settings.revocations
    )


def start_revocations(
    settings: Settings, store: DataStore | None, deps: Dependencies, stack: contextlib.AsyncExitStack
) -> RevocationService | None:
    """The revocation service (injected, or built on the store when REVOCATIONS) and its sync task."""
    service = deps.revocations
    if service is None and settings.revocations and store is not None:
        service = RevocationService(
            store,
            policy=RevocationPolicy(
                max_token_lifetime=settings.revocation_max_token_lifetime,
                leeway=settings.leeway,
                max_entries=settings.revocation_max_entries,
                max_lag=settings.revocation_max_lag,
                fail_closed=settings.revocation_fail_closed,
            ),
            database_url=settings.database_url.get_secret_value(),
            schema=settings.database_schema,
            clock=deps.clock,
            wall_clock=deps.wall_clock,
            log=get_logger("webhook.revocation.active"),
        )
    if service is None:
        return None
    deps.metrics.watch_revocations(service)
    task = asyncio.get_running_loop().create_task(_after_ready(store, service.run()), name="revocations")
    stack.push_async_callback(cancel, task)
    return service


async def _after_ready(store: DataStore | None, job: Coroutine[Any, Any, None]) -> None:
    """Run `job` once the store's schema is usable (auto-migrate may still be running)."""
    try:
        if store is not None:
            await store.ready.wait()
    except BaseException:
        job.close()
        raise
    await job


def realm_registry(settings: Settings, store: DataStore, deps: Dependencies) -> DbRealmRegistry:
    """The strict registry; the realms named in the configuration are always trusted."""
    always = set(settings.extra_realms) | set(settings.prefetch_realms)
    if settings.super_admin_tenant_id is not None:
        always.add(tenant_realm_name(settings.super_admin_tenant_id))
    return DbRealmRegistry(
        store,
        always=always,
        ttl=settings.realm_cache_ttl,
        negative_ttl=settings.realm_cache_negative_ttl,
        max_entries=settings.realm_cache_size,
        lookup_rate=settings.realm_lookup_rate,
        max_concurrent=settings.realm_lookup_max_concurrent,
        clock=deps.clock,
        log=get_logger("webhook.realm_registry"),
    )


def published_realms(settings: Settings, runtime: Runtime, store: DataStore | None) -> PublishedRealms:
    """What `/jwks` publishes: the configured realms and every provisioned one (see jwkspublish.py)."""
    configured = set(settings.prefetch_realms)
    if settings.super_admin_tenant_id is not None:
        configured.add(tenant_realm_name(settings.super_admin_tenant_id))
    return PublishedRealms(
        runtime.cache,
        runtime.realms,
        configured=configured,
        store=store,
        interval=max(10.0, min(60.0, settings.jwks_ttl / 2)),
        log=get_logger("webhook.auth.jwks"),
    )


def admin_credentials(settings: Settings) -> AdminCredentials | None:
    """The service's Keycloak admin client, if configured."""
    secret = settings.keycloak_admin_client_secret
    if secret is None or not settings.keycloak_admin_client_id:
        return None
    return AdminCredentials(
        keycloak_url=settings.keycloak_url,
        realm=settings.keycloak_admin_realm,
        client_id=settings.keycloak_admin_client_id,
        client_secret=secret,
        timeout=settings.keycloak_admin_timeout,
    )


def api_key_policy(
    settings: Settings,
    store: DataStore,
    client: httpx.AsyncClient,
    deps: Dependencies,
    *,
    revocations: RevocationService | None = None,
) -> ApiKeyPolicy:
    """The API key actions' settings, and their service when the admin client is configured.

    Revoking or rotating a key ends its live tokens when this process holds revocations (`revocations`)
    or, in the CLI, when REVOCATIONS is on: the serving processes then get the row like any other."""
    credentials = admin_credentials(settings)
    service = None
    if credentials is not None:
        admin = KeycloakAdmin(client, credentials, log=get_logger("webhook.keycloak_admin"))
        revoker = None
        if revocations is not None or settings.revocations:
            policy = revocations.policy if revocations is not None else None
            revoker = UserRevoker(
                max_token_lifetime=policy.max_token_lifetime if policy else settings.revocation_max_token_lifetime,
                leeway=policy.leeway if policy else settings.leeway,
                wall_clock=deps.wall_clock,
                hold=None if revocations is None else revocations.hold,
                log=get_logger("webhook.revocation.active"),
            )
        service = ApiKeyService(
            admin, store, wall_clock=deps.wall_clock, audiences=sorted(settings.audiences), revoker=revoker
        )
    return ApiKeyPolicy(
        service=service,
        write_role=settings.api_key_write_role,
        read_role=settings.api_key_read_role,
        never_granted=settings.forbidden_roles | settings.platform_roles,
        token_url_base=settings.issuer_urls[0] if settings.issuer_urls else settings.keycloak_url,
    )


def provisioning_worker(
    settings: Settings,
    store: DataStore,
    client: httpx.AsyncClient,
    deps: Dependencies,
    *,
    published: PublishedRealms | None = None,
) -> ProvisioningWorker:
    """The worker the settings describe (the admin client's credentials must be set)."""
    credentials = admin_credentials(settings)
    if credentials is None:
        raise ValueError("the provisioning worker needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
    return ProvisioningWorker(
        store,
        KeycloakAdmin(client, credentials, log=get_logger("webhook.keycloak_admin")),
        policy=WorkerPolicy(
            poll=settings.provisioning_poll,
            max_attempts=settings.provisioning_max_attempts,
            backoff_max=settings.provisioning_backoff_max,
            lease=settings.provisioning_lease,
        ),
        urls=PortalUrls(
            voting_portal=settings.voting_portal_url,
            admin_portal=settings.admin_portal_url,
            backchannel_logout=settings.backchannel_logout_url,
        ),
        log=get_logger("webhook.provisioning"),
        wall_clock=deps.wall_clock,
        worker_id=deps.worker_id,
        metrics=deps.metrics,
        on_provisioned=None if published is None else published.add,
    )


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a background task and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def cache_policy(settings: Settings) -> CachePolicy:
    """The JWKS cache rules the JWKS_* settings describe."""
    return CachePolicy(
        ttl=settings.jwks_ttl,
        min_refetch=settings.jwks_min_refetch,
        retry=settings.jwks_retry,
        max_stale=settings.jwks_max_stale,
        negative_ttl=settings.jwks_negative_ttl,
        max_realms=settings.jwks_max_realms,
        max_concurrent_fetches=settings.jwks_max_concurrent_fetches,
        fetch_timeout=settings.jwks_fetch_timeout,
        max_bytes=settings.jwks_max_bytes,
        new_realm_fetch_rate=settings.jwks_new_realm_fetch_rate,
    )


def build_runtime(
    settings: Settings,
    client: httpx.AsyncClient,
    deps: Dependencies,
    *,
    realm_registry: RealmRegistry | None = None,
    revocations: RevocationService | None = None,
) -> Runtime:
    """Realm policy, JWKS cache and verifier for these settings (no task started, no IO yet)."""
    realms = RealmPolicy(settings.issuer_urls, settings.extra_realms, settings.keycloak_url)
    policy = cache_policy(settings)
    fetcher = JwksFetcher(client, realms, policy, settings.algorithms)
    cache = JwksCache(fetcher, policy=policy, clock=deps.clock, metrics=deps.metrics)
    cache.pin(r for r in (realms.realm_for_name(n) for n in settings.prefetch_realms) if r is not None)
    tokens = VerifiedTokenCache(
        max_entries=settings.token_cache_size,
        max_rejections=settings.token_cache_rejections_size,
        ttl=settings.token_cache_ttl,
        generation_of=cache.generation,
        wall_clock=deps.wall_clock,
    )
    labels = RealmLabels(settings.extra_realms, settings.prefetch_realms)
    api_keys = ApiKeyExpiries(deps.wall_clock, name_allowed=name_allowed)
    verifier = Verifier(
        realms=realms,
        cache=cache,
        algorithms=settings.algorithms,
        claims=ClaimsPolicy(settings.leeway, settings.audiences, settings.azps),
        forbidden_roles=settings.forbidden_roles,
        platform_roles=settings.platform_roles,
        super_admin_tenant=settings.super_admin_tenant_id,
        max_token_bytes=settings.max_token_bytes,
        wall_clock=deps.wall_clock,
        token_cache=tokens,
        realm_registry=realm_registry,
        on_verified=labels.verified,
        revoked=None if revocations is None else revocations.revoked,
        on_api_key=api_keys.seen,
    )
    deps.metrics.watch_token_cache(tokens)
    deps.metrics.watch_api_keys(api_keys)
    deps.metrics.watch_jwks(cache)
    return Runtime(settings, cache, verifier, deps.metrics, realms, tokens, labels, revocations=revocations)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client used for Keycloak: no redirects, no proxies from the environment, bounded."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.jwks_fetch_timeout),
        limits=httpx.Limits(max_connections=settings.jwks_max_concurrent_fetches * 2),
        headers={"User-Agent": f"election-webhook/{__version__}"},
    )
