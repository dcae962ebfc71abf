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
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from webhook import __version__
from webhook.actions.auth import ActionAuth
from webhook.actions.context import ActionContext
from webhook.actions.endpoint import ActionsEndpoint, ActionServices
from webhook.actions.registry import default_registry
from webhook.audit.record import AuditSink
from webhook.audit.sink import CountingSink, audit_detail, audit_status, db_audit_sink
from webhook.auth.endpoint import AuthHook, HookServices
from webhook.auth.jwksview import union_jwks
from webhook.auth.realmregistry import DbRealmRegistry
from webhook.auth.verifier import Verifier
from webhook.core.realms import RealmRegistry
from webhook.db.datastore import DataStore
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.logs import get_logger
from webhook.observability.openapi import openapi_json
from webhook.revocation.endpoint import PATH as BACKCHANNEL_PATH
from webhook.revocation.endpoint import BackchannelLogout, LogoutServices
from webhook.revocation.service import RevocationService
from webhook.settings import Settings
from webhook.wiring import (
    Dependencies,
    Runtime,
    api_key_policy,
    build_runtime,
    cancel,
    http_client,
    needs_store,
    provisioning_worker,
    realm_registry,
    start_keys,
    start_revocations,
)

HOOK_PATH = "/hasura/auth"


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
                    stack.push_async_callback(cancel, migration)
            registry = deps.realm_registry
            if registry is None and settings.strict_realm_registry and store is not None:
                registry = realm_registry(settings, store, deps)
            revocations = start_revocations(settings, store, deps, stack)
            runtime = build_runtime(settings, client, deps, realm_registry=registry, revocations=revocations)
            runtime.store = store
            verifier = runtime.verifier
            start_keys(stack, settings, runtime, store)
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
            stack.push_async_callback(cancel, runtime.worker_task)

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


def create_app(settings: Settings, deps: Dependencies | None = None) -> WebhookApp:
    """The service's ASGI app for these settings and dependencies."""
    return WebhookApp(settings, deps)
