"""The OIDC HTTP endpoints of the fake Keycloak: per-realm certs, discovery and token, with fault modes.

Rules of this module:
- Paths, status codes, headers and JSON shapes are Keycloak's:
  ``/realms/{realm}/protocol/openid-connect/certs`` (``Cache-Control: no-cache``),
  ``/realms/{realm}/.well-known/openid-configuration``, ``/realms/{realm}/protocol/openid-connect/token``
  (the admin realm's client-credentials grant, handed to the admin API; in a realm the admin API holds,
  that of its confidential service-account clients, API keys: ``sub`` = the service account, no ``sid``,
  its mappers' claims, no ``realm_access`` or ``aud: account`` with full scope off; 401
  ``unauthorized_client`` for a wrong secret, ``invalid_client`` for a deleted client, as Keycloak
  26.7.3: tests/keycloak/test_api_key_contract.py) and, for an unknown realm,
  404 ``{"error": "Realm does not exist"}``. Any other path is a 404.
- Fault modes (``Behaviour``, per realm or for all) never sleep: "slow" blocks on an event set by
  ``release_slow()`` and by shutdown.
- Everything received is recorded (``requests``, ``jwks_fetches``) before it is answered.
- ``OidcEndpoints`` is a base of ``FakeKeycloak`` (and a ``TokenMinter``): it serves the realms in ``_realms``
  and hands the admin realm's token requests to ``admin_api``. Its controls (``set_behaviour``,
  ``wait_for_jwks_fetches``...) belong to the event loop serving the fake; call them from that loop's thread.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.testing.adminapi import FakeAdminApi
from webhook.testing.keys import DROP, json_bytes
from webhook.testing.mappers import mapped_claims
from webhook.testing.tokens import HASURA_CLAIMS, TokenMinter

__all__ = ["Behaviour", "OidcEndpoints"]

Behaviour = Literal["ok", "down", "slow", "garbage", "html", "huge", "redirect", "empty_keys"]
_HUGE_CHUNK = 64 * 1024
_HUGE_CHUNKS = 160  # ~10 MB


class _Recorder:
    """ASGI wrapper recording (method, path) of every HTTP request before the app sees it."""

    def __init__(self, app: ASGIApp, owner: OidcEndpoints) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.owner.requests.append((str(scope["method"]), str(scope["path"])))
            await self.owner._notify()
        await self.app(scope, receive, send)


async def _huge_body() -> AsyncIterator[bytes]:
    yield b'{"keys":[],"padding":"'
    chunk = b"A" * _HUGE_CHUNK
    for _ in range(_HUGE_CHUNKS):
        yield chunk
    yield b'"}'


class OidcEndpoints(TokenMinter):
    """Keycloak's realm endpoints over the realms in ``_realms``, serving the minter's tokens (a base of
    ``FakeKeycloak``)."""

    admin_api: FakeAdminApi

    def __init__(self) -> None:
        self._url: str | None = None
        self._default_behaviour: Behaviour = "ok"
        self._realm_behaviour: dict[str, Behaviour] = {}
        self._redirect_to: str | None = None
        self._slow_gate = asyncio.Event()
        self._changed = asyncio.Condition()
        #: certs requests per realm name in the path, counted on arrival, whatever the answer.
        self.jwks_fetches: Counter[str] = Counter()
        #: (method, path) of every request received, in arrival order.
        self.requests: list[tuple[str, str]] = []

    def _endpoints_app(self, *mounts: BaseRoute) -> ASGIApp:
        """The recorded ASGI app of these endpoints, with ``mounts`` (the admin API) beside them."""
        return _Recorder(
            Starlette(
                routes=[
                    Route("/realms/{realm}/protocol/openid-connect/certs", self._certs, methods=["GET"]),
                    Route(
                        "/realms/{realm}/.well-known/openid-configuration",
                        self._openid_configuration,
                        methods=["GET"],
                    ),
                    Route("/realms/{realm}/protocol/openid-connect/token", self._token, methods=["POST"]),
                    *mounts,
                ]
            ),
            self,
        )

    def _reset_endpoints_loop_state(self) -> None:
        # asyncio primitives bind to the first loop that waits on them: one set per serving loop.
        self._slow_gate = asyncio.Event()
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        """Base URL the fake is served on (the internal Keycloak URL)."""
        if self._url is None:
            raise RuntimeError("this FakeKeycloak is not being served")
        return self._url

    def set_behaviour(self, mode: Behaviour, realm: str | None = None, *, redirect_to: str | None = None) -> None:
        """Make the endpoints of ``realm`` (None: all realms, clearing per-realm modes) answer per ``mode``.

        "down": 503; "slow": wait for ``release_slow()`` then answer normally; "garbage": 200 non-JSON;
        "html": 200 HTML page; "huge": 200 streamed ~10 MB JSON; "redirect": 302 to ``redirect_to``
        (default: this fake's own ``/evil``, so a followed redirect shows up in ``requests``);
        "empty_keys": certs answer ``{"keys": []}``.
        """
        if realm is None:
            self._default_behaviour = mode
            self._realm_behaviour.clear()
        else:
            self._realm_behaviour[realm] = mode
        if redirect_to is not None:
            self._redirect_to = redirect_to
        if mode == "slow":
            self._slow_gate.clear()

    def release_slow(self) -> None:
        """Let every request held by "slow" (now and until "slow" is set again) proceed."""
        self._slow_gate.set()

    def behaviour(self, realm: str) -> Behaviour:
        return self._realm_behaviour.get(realm, self._default_behaviour)

    @property
    def total_requests(self) -> int:
        return len(self.requests)

    def reset_counters(self) -> None:
        self.jwks_fetches.clear()
        self.requests.clear()

    async def wait_for_jwks_fetches(self, realm: str, count: int = 1) -> None:
        """Return once ``jwks_fetches[realm] >= count`` (bound it with ``asyncio.timeout``/``anyio``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.jwks_fetches[realm] >= count)

    async def wait_for_request(self, method: str, path_prefix: str) -> None:
        """Return once a request ``method`` to a path starting with ``path_prefix`` has arrived (bound it)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: any(m == method and p.startswith(path_prefix) for m, p in self.requests)
            )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- endpoints

    async def _fault(self, mode: Behaviour) -> Response | None:
        if mode == "down":
            return PlainTextResponse("Service Unavailable", status_code=503)
        if mode == "slow":
            await self._slow_gate.wait()
            return None
        if mode == "garbage":
            return Response(b"\x00\xff{not json, really\x89PNG", media_type="application/json")
        if mode == "html":
            return HTMLResponse(
                "<!DOCTYPE html><html><head><title>Sign in to Keycloak</title></head>"
                "<body><p>We are sorry... Page not found</p></body></html>"
            )
        if mode == "huge":
            return StreamingResponse(_huge_body(), media_type="application/json")
        if mode == "redirect":
            return RedirectResponse(self._redirect_to or f"{self.url}/evil", status_code=302)
        return None

    async def _certs(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        self.jwks_fetches[name] += 1
        await self._notify()
        mode = self.behaviour(name)
        fault = await self._fault(mode)
        if fault is not None:
            return fault
        realm = self._realms.get(name)
        if realm is None:
            return _realm_missing()
        body = {"keys": []} if mode == "empty_keys" else realm.jwks()
        return Response(json_bytes(body), media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def _openid_configuration(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        fault = await self._fault(self.behaviour(name))
        if fault is not None:
            return fault
        realm = self._realms.get(name)
        if realm is None:
            return _realm_missing()
        return Response(json_bytes(realm.openid_configuration()), media_type="application/json")

    def _client_credentials(self, request: Request, form: Mapping[str, list[str]]) -> tuple[str, str]:
        basic = request.headers.get("authorization", "")
        if basic[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return "", ""
            return client_id, secret
        return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]

    async def _token(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        client_id, secret = self._client_credentials(request, form)
        grant = form.get("grant_type", [""])[0]
        if name != self.admin_api.admin_realm:
            if name not in self._realms:
                return _realm_missing()
            if grant == "client_credentials" and name in self.admin_api.realms:
                return self._service_token(name, client_id, secret)
            return JSONResponse({"error": "unauthorized_client", "error_description": "Invalid client"}, 401)
        return await self.admin_api.token(request, client_id, secret, grant)

    def _service_token(self, realm: str, client_id: str, secret: str) -> Response:
        """The client-credentials grant of a client the admin API holds: its mappers' claims, no sid."""
        found = self.admin_api.service_credentials(realm, client_id, secret)
        if isinstance(found, str):
            return JSONResponse(
                {"error": found, "error_description": "Invalid client or Invalid client credentials"}, 401
            )
        client, account = found
        mapped, audiences = mapped_claims(client.get("protocolMappers"), account)
        hasura = mapped.pop(HASURA_CLAIMS, {})
        extra: dict[str, Any] = {
            **mapped,
            "preferred_username": f"service-account-{client_id}",
            "client_id": client_id,
            "email_verified": False,
            **dict.fromkeys(("name", "given_name", "family_name", "email"), DROP),  # a service account has none
        }
        full_scope = client.get("fullScopeAllowed", True) is not False
        if not full_scope:  # no realm role is in the client's scope: no realm_access, no account audience
            extra["realm_access"] = DROP
        if audiences:
            extra["aud"] = audiences[0] if len(audiences) == 1 else audiences
        token = self.mint(
            realm,
            sub=account,
            roles=[f"default-roles-{realm}"] if full_scope else [],
            default_role=str(hasura.get("x-hasura-default-role", "")),
            hasura_claims=hasura,
            claims=extra,
            azp=client_id,
            grant="client_credentials",
        )
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": 300,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }
        )


def _realm_missing() -> Response:
    return JSONResponse({"error": "Realm does not exist"}, status_code=404)
