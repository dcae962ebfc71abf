"""The composition root: `create_app` wires settings and dependencies; the lifespan owns all IO.

Rules of this module:
- Nothing is created at import time. The lifespan creates (or takes injected) the HTTP client,
  the JWKS cache and its refresher task, and tears them down in reverse order.
- Dependencies are injected through `Dependencies` (clock, HTTP client, audit sink): tests and
  the dev mode pass fakes here instead of patching. With no audit sink injected, the lifespan
  builds the database sink from the settings (engine, optional auto-migrate, writer task).
- `/hasura/auth` is dispatched before Starlette's router: it is the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
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
from webhook.audit import AuditSink
from webhook.auditwriter import CountingSink, audit_status, db_audit_sink
from webhook.config import Settings
from webhook.decisionlog import DecisionLog
from webhook.hook import AuthHook, HookServices
from webhook.jwks import CachePolicy, JwksCache, JwksFetcher
from webhook.jwksview import union_jwks
from webhook.logs import get_logger
from webhook.metrics import Metrics, RealmLabels
from webhook.realms import RealmPolicy
from webhook.token import ClaimsPolicy
from webhook.tokencache import VerifiedTokenCache
from webhook.verifier import Verifier

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


@dataclass(slots=True)
class Runtime:
    """What the lifespan built; reachable from the app for health checks and tests."""

    settings: Settings
    cache: JwksCache
    verifier: Verifier
    metrics: Metrics
    realms: RealmPolicy
    tokens: VerifiedTokenCache
    prefetch: asyncio.Task[int] | None = None
    audit: AuditSink | None = None


class WebhookApp:
    """The ASGI app: the hot hook path plus a Starlette app for everything else."""

    def __init__(self, settings: Settings, deps: Dependencies | None = None) -> None:
        self.settings = settings
        self.deps = deps or Dependencies()
        self.hook = AuthHook()
        self.runtime: Runtime | None = None
        self._last_jwks: dict[str, Any] | None = None
        self.router = Starlette(
            routes=[
                Route("/healthz", self._healthz),
                Route("/readyz", self._readyz),
                Route("/metrics", self._metrics),
                Route("/jwks", self._jwks),
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
            runtime = build_runtime(settings, client, deps)
            cache, verifier = runtime.cache, runtime.verifier
            stack.push_async_callback(cache.close)
            loop = asyncio.get_running_loop()
            # First load of the pinned realms runs in the background: the service answers (and
            # /readyz says "not ready") while Keycloak is slow or down at start.
            runtime.prefetch = loop.create_task(cache.refresh_due())
            refresher = loop.create_task(
                cache.run_refresher(max(1.0, min(float(settings.jwks_retry), settings.jwks_ttl / 10)))
            )
            stack.callback(refresher.cancel)
            stack.callback(runtime.prefetch.cancel)
            audit = deps.audit
            if audit is None:
                audit = await stack.enter_async_context(
                    db_audit_sink(
                        settings,
                        metrics=deps.metrics,
                        log=get_logger("webhook.audit"),
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
            self.hook.services = HookServices(
                verifier=verifier,
                metrics=deps.metrics,
                audit=CountingSink(audit, deps.metrics, RealmLabels(settings.extra_realms, settings.prefetch_realms)),
                log=decisions,
                anonymous_role=settings.anonymous_role,
                max_body_bytes=settings.max_body_bytes,
                wall_clock=deps.wall_clock,
            )
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
                self.runtime = None
                log.info("webhook.stopping")

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
        max_age = max(10, min(self.settings.jwks_ttl // 2, 300))
        return Response(
            orjson.dumps(body),
            media_type="application/json",
            headers={"Cache-Control": f"max-age={max_age}"},
        )

    async def _metrics(self, _request: Request) -> Response:
        return Response(self.deps.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def build_runtime(settings: Settings, client: httpx.AsyncClient, deps: Dependencies) -> Runtime:
    """Realm policy, JWKS cache and verifier for these settings (no task started, no IO yet)."""
    realms = RealmPolicy(settings.issuer_urls, settings.extra_realms, settings.keycloak_url)
    policy = CachePolicy(
        ttl=settings.jwks_ttl,
        min_refetch=settings.jwks_min_refetch,
        retry=settings.jwks_retry,
        max_stale=settings.jwks_max_stale,
        negative_ttl=settings.jwks_negative_ttl,
        max_realms=settings.jwks_max_realms,
        max_concurrent_fetches=settings.jwks_max_concurrent_fetches,
        fetch_timeout=settings.jwks_fetch_timeout,
        max_bytes=settings.jwks_max_bytes,
    )
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
    verifier = Verifier(
        realms=realms,
        cache=cache,
        algorithms=settings.algorithms,
        claims=ClaimsPolicy(settings.leeway, settings.audiences, settings.azps),
        forbidden_roles=settings.forbidden_roles,
        max_token_bytes=settings.max_token_bytes,
        wall_clock=deps.wall_clock,
        token_cache=tokens,
    )
    deps.metrics.watch_token_cache(tokens)
    return Runtime(settings, cache, verifier, deps.metrics, realms, tokens)


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
