"""The composition root: `create_app` wires settings and dependencies; the lifespan owns all IO.

Rules of this module:
- Nothing is created at import time. The lifespan creates (or takes injected) the HTTP client,
  the JWKS cache and its refresher task, and tears them down in reverse order.
- Dependencies are injected through `Dependencies` (clock, HTTP client, audit sink): tests and
  the dev mode pass fakes here instead of patching. With no audit sink injected, the lifespan
  builds the database sink from the settings (engine, optional auto-migrate, writer task).
- `/hasura/auth` is dispatched before Starlette's router: it is the hot path.
- The actions (`POST /actions/{name}`), the realm provisioning worker and the strict realm registry
  share one `DataStore`, built only when one of them is enabled (ACTIONS_SECRET,
  PROVISIONING_WORKER, STRICT_REALM_REGISTRY); the worker task is cancelled and awaited before the
  store is disposed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook import __version__
from webhook.actions.apikey import ApiKeyPolicy
from webhook.actions.auth import ActionAuth
from webhook.actions.context import ActionContext
from webhook.actions.endpoint import ActionsEndpoint, ActionServices
from webhook.actions.registry import ActionRegistry, default_registry
from webhook.audit.record import AuditSink
from webhook.audit.writer import CountingSink, audit_detail, audit_status, db_audit_sink
from webhook.auth.endpoint import AuthHook, HookServices
from webhook.auth.jwks import JwksCache
from webhook.auth.jwksfetch import CachePolicy, JwksFetcher
from webhook.auth.jwkspublish import PublishedRealms
from webhook.auth.jwksview import union_jwks
from webhook.auth.realmregistry import DbRealmRegistry
from webhook.auth.tokencache import VerifiedTokenCache
from webhook.auth.verifier import Verifier
from webhook.config import Settings
from webhook.core.realms import RealmPolicy, RealmRegistry, tenant_realm_name
from webhook.core.token import ClaimsPolicy
from webhook.db.datastore import DataStore
from webhook.observability.apikeyexpiry import ApiKeyExpiries
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.logs import get_logger
from webhook.observability.metrics import Metrics, RealmLabels
from webhook.observability.openapi import openapi_json
from webhook.provisioning.apikeyclient import name_problem
from webhook.provisioning.apikeys import ApiKeyService
from webhook.provisioning.keycloakadmin import AdminCredentials, KeycloakAdmin
from webhook.provisioning.templates import PortalUrls
from webhook.provisioning.worker import ProvisioningWorker, WorkerPolicy
from webhook.revocation.endpoint import PATH as BACKCHANNEL_PATH
from webhook.revocation.endpoint import BackchannelLogout, LogoutServices
from webhook.revocation.service import RevocationPolicy, RevocationService
from webhook.revocation.userrevoker import UserRevoker

HOOK_PATH = "/hasura/auth"


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


def _start_keys(
    stack: contextlib.AsyncExitStack, settings: Settings, runtime: Runtime, store: DataStore | None
) -> None:
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
    stack.push_async_callback(_cancel, publisher)


class WebhookApp:
    """The ASGI app: the hot hook path plus a Starlette app for everything else."""

    def __init__(self, settings: Settings, deps: Dependencies | None = None) -> None:
        self.settings = settings
        self.deps = deps or Dependencies()
        self.hook = AuthHook()
        self.actions = ActionsEndpoint(self.deps.actions or default_registry())
        self.backchannel = BackchannelLogout()
        self.runtime: Runtime | None = None
        self._last_jwks: dict[str, Any] | None = None
        self.router = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                Route("/metrics", self._metrics),
                Route("/jwks", self._jwks),
                Route("/openapi.json", self._openapi),
                Route("/actions/{action_name}", self.actions.handle, methods=["POST"]),
                Route(BACKCHANNEL_PATH, self.backchannel.handle, methods=["POST"]),
            ],
            lifespan=self._lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == HOOK_PATH:
            await self.hook(scope, receive, send)
        else:
            await self.router(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        settings, deps = self.settings, self.deps
        log = get_logger("webhook")
        async with contextlib.AsyncExitStack() as stack:
            client = deps.http_client
            if client is None:
                client = await stack.enter_async_context(http_client(settings))
            store = None
            if needs_store(settings):
                store = DataStore.from_settings(settings)
                stack.push_async_callback(store.dispose)
                if not store.ready.is_set():
                    migration = asyncio.get_running_loop().create_task(
                        store.migrate_until_ready(get_logger("webhook.db.datastore"))
                    )
                    stack.push_async_callback(_cancel, migration)
            registry = deps.realm_registry
            if registry is None and settings.strict_realm_registry and store is not None:
                registry = realm_registry(settings, store, deps)
            revocations = start_revocations(settings, store, deps, stack)
            runtime = build_runtime(settings, client, deps, realm_registry=registry, revocations=revocations)
            runtime.store = store
            verifier = runtime.verifier
            _start_keys(stack, settings, runtime, store)
            loop = asyncio.get_running_loop()
            audit = deps.audit
            if audit is None:
                audit = await stack.enter_async_context(
                    db_audit_sink(
                        settings,
                        metrics=deps.metrics,
                        log=get_logger("webhook.audit.record"),
                        clock=deps.clock,
                        wall_clock=deps.wall_clock,
                    )
                )
            runtime.audit = audit
            decisions = deps.decision_log or DecisionLog(
                enabled=settings.log_level in ("debug", "info"), console=settings.log_format == "console"
            )
            stack.callback(decisions.flush)
            flusher = loop.create_task(decisions.run_flusher())
            stack.callback(flusher.cancel)
            self.runtime = runtime
            counting = CountingSink(audit, deps.metrics, runtime.labels)
            self.hook.services = HookServices(
                verifier=verifier,
                metrics=deps.metrics,
                audit=counting,
                log=decisions,
                anonymous_role=settings.anonymous_role,
                max_body_bytes=settings.max_body_bytes,
                wall_clock=deps.wall_clock,
            )
            await self._start_actions(
                stack, runtime=runtime, store=store, client=client, audit=counting, registry=registry
            )
            self._start_backchannel(revocations, verifier, counting)
            log.info(
                "webhook.started",
                version=__version__,
                keycloak_url=settings.keycloak_url,
                issuers=list(settings.issuer_urls),
                prefetch=list(settings.prefetch_realms),
                dev_mode=settings.dev_mode,
                audit="injected" if deps.audit is not None else str(settings.database_url),
            )
            try:
                yield
            finally:
                self.hook.services = None
                self.actions.services = None
                self.backchannel.services = None
                self.runtime = None
                log.info("webhook.stopping")

    async def _start_actions(
        self,
        stack: contextlib.AsyncExitStack,
        *,
        runtime: Runtime,
        store: DataStore | None,
        client: httpx.AsyncClient,
        audit: AuditSink,
        registry: RealmRegistry | None,
    ) -> None:
        """The provisioning worker (when enabled) and the actions' services (no store: actions disabled)."""
        settings, deps = self.settings, self.deps
        worker = None
        if settings.provisioning_worker and store is not None:
            worker = provisioning_worker(settings, store, client, deps, published=runtime.published)
            runtime.worker = worker
            runtime.worker_task = asyncio.get_running_loop().create_task(worker.run(), name="provisioning worker")
            stack.push_async_callback(_cancel, runtime.worker_task)

        def created(realm: str) -> None:
            if isinstance(registry, DbRealmRegistry):
                registry.forget(realm)
            if worker is not None:
                worker.notify()

        self.actions.services = ActionServices(
            auth=ActionAuth(
                secret=settings.actions_secret, verifier=runtime.verifier, audit=audit, wall_clock=deps.wall_clock
            ),
            context=None
            if store is None
            else ActionContext(
                store=store,
                wall_clock=deps.wall_clock,
                super_admin_tenant_id=settings.super_admin_tenant_id,
                on_created=created,
                api_keys=api_key_policy(settings, store, client, deps, revocations=runtime.revocations),
            ),
            metrics=deps.metrics,
            log=get_logger("webhook.actions"),
            max_body_bytes=settings.max_body_bytes,
        )

    def _start_backchannel(self, revocations: RevocationService | None, verifier: Verifier, audit: AuditSink) -> None:
        """The back-channel logout endpoint's services (revocations off: it answers 404)."""
        settings = self.settings
        self.backchannel.enabled = revocations is not None
        if revocations is not None:
            self.backchannel.services = LogoutServices(
                verifier=verifier,
                revocations=revocations,
                audit=audit,
                audiences=settings.backchannel_logout_audiences,
                max_body_bytes=settings.max_token_bytes + 1024,
                wall_clock=self.deps.wall_clock,
                log=get_logger("webhook.revocation.active"),
            )

    async def _healthz(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def _readyz(self, _request: Request) -> Response:
        runtime = self.runtime
        if runtime is None:
            return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
        realms = {name: runtime.cache.state(name) or "loading" for name in self.settings.prefetch_realms}
        errors = {n: runtime.cache.last_error(n) for n, s in realms.items() if s not in ("fresh", "stale")}
        ready = all(state in ("fresh", "stale") for state in realms.values())
        body = {"ready": ready, "realms": realms, "errors": errors, "realms_cached": len(runtime.cache)}
        body["audit"] = audit_status(runtime.audit)  # informative: degraded never makes us unready
        detail = audit_detail(runtime.audit)
        if detail is not None:
            body["audit_detail"] = detail
        if runtime.store is not None:  # informative too: the hook does not need the actions' database
            body["database"] = "ok" if runtime.store.ready.is_set() else "migrating"
        if runtime.revocations is not None:  # ready once loaded; uncertain is informative (REVOCATION_*)
            body["revocations"] = runtime.revocations.status()
            ready = ready and runtime.revocations.loaded
            body["ready"] = ready
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json")

    async def _jwks(self, _request: Request) -> Response:
        runtime = self.runtime
        if runtime is None:
            return JSONResponse({"error": "starting"}, status_code=503)
        current = union_jwks(runtime.cache.realm_keys())
        if current["keys"]:
            self._last_jwks = current
        # Keycloak failing past max-stale empties the cache; keep serving the last good set.
        body = current if current["keys"] or self._last_jwks is None else self._last_jwks
        ttl = self.settings.jwks_ttl
        max_age = runtime.published.max_age(ttl) if runtime.published is not None else max(10, min(ttl // 2, 300))
        return Response(
            orjson.dumps(body),
            media_type="application/json",
            headers={"Cache-Control": f"max-age={max_age}"},
        )

    async def _openapi(self, _request: Request) -> Response:
        return Response(openapi_json(), media_type="application/json")

    async def _metrics(self, _request: Request) -> Response:
        return Response(self.deps.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


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
            database_url=settings.database_url.reveal(),
            schema=settings.database_schema,
            clock=deps.clock,
            wall_clock=deps.wall_clock,
            log=get_logger("webhook.revocation.active"),
        )
    if service is None:
        return None
    deps.metrics.watch_revocations(service)
    task = asyncio.get_running_loop().create_task(_after_ready(store, service.run()), name="revocations")
    stack.push_async_callback(_cancel, task)
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


async def _cancel(task: asyncio.Task[Any]) -> None:
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
    api_keys = ApiKeyExpiries(deps.wall_clock, name_allowed=lambda name: name_problem(name) is None)
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


def create_app(settings: Settings, deps: Dependencies | None = None) -> WebhookApp:
    """The service's ASGI app for these settings and dependencies."""
    return WebhookApp(settings, deps)
