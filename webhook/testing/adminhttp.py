"""What every endpoint of the fake admin API shares (``AdminHttp``): modes, gatekeeping, records, the token.

What it answers (each point checked against the real 26.x by tests/keycloak/test_provisioning_real.py):
- The client-credentials token of the configured admin client (``token``, called by the fake's token
  endpoint for the admin realm); "down" answers 503 there too.
- Before any endpoint: no admin client configured is a 404; "down" is a 503; "slow" holds the call until
  released; headers over `header_limit` bytes are a 431; a missing, expired or revoked bearer token a 401.
- For a realm the client may not manage, a read-only call goes on (the endpoint answers with the name
  only) and every other call answers 403; an unknown realm is a 404.
- Every call is recorded in `calls` with its status and realm.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Final, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from webhook.testing.adminmodel import AdminCall, AdminModel, AdminRealm

__all__ = ["DEFAULT_HEADER_LIMIT", "AdminHttp", "Mode"]

DEFAULT_HEADER_LIMIT: Final = 65536  # bytes of request headers before a 431

Mode = Literal["ok", "down", "slow"]


class AdminHttp(AdminModel):
    """The admin model behind HTTP: what every admin endpoint checks and records (the base of ``FakeAdminApi``)."""

    def __init__(
        self, *, on_created: Callable[[str], None] | None = None, on_deleted: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(on_created=on_created, on_deleted=on_deleted)
        self.calls: list[AdminCall] = []
        self.header_limit = DEFAULT_HEADER_LIMIT
        self._mode: Mode = "ok"
        self._gate = asyncio.Event()
        self._gate.set()

    # ---- controls ---------------------------------------------------------------------------

    def set_mode(self, mode: Mode) -> None:
        """ "down": 503 everywhere (token included); "slow": calls wait for `release()`."""
        self._mode = mode
        if mode == "slow":
            self._gate.clear()
        else:
            self._gate.set()

    def release(self) -> None:
        """Let calls held by "slow" proceed."""
        self._gate.set()

    def reset_loop_state(self) -> None:
        """A new event loop serves the fake (serve_in_thread)."""
        self._gate = asyncio.Event()
        self._gate.set()

    # ---- helpers ----------------------------------------------------------------------------

    def _record(self, request: Request, status: int, realm: str | None) -> None:
        self.calls.append(AdminCall(request.method, request.url.path, status, realm))

    async def _gatekeep(self, request: Request, realm: str | None) -> Response | None:
        """503/held, 431, 401 checks shared by every admin route."""
        if self._client is None:
            return PlainTextResponse("Not Found", status_code=404)
        if self._mode == "down":
            self._record(request, 503, realm)
            return PlainTextResponse("Service Unavailable", status_code=503)
        await self._gate.wait()
        size = sum(len(k) + len(v) + 4 for k, v in request.headers.items())
        if size > self.header_limit:
            self._record(request, 431, realm)
            return PlainTextResponse("Request Header Fields Too Large", status_code=431)
        header = request.headers.get("authorization", "")
        expiry = self._tokens.get(header[7:].strip()) if header[:7].lower() == "bearer " else None
        if expiry is None or expiry <= time.time():
            return self._refuse(request, realm, 401, {"error": "HTTP 401 Unauthorized"})
        return None

    async def _realm_for(
        self, request: Request, *, read_only: bool = False
    ) -> tuple[AdminRealm | None, Response | None]:
        name = str(request.path_params["name"])
        refused = await self._gatekeep(request, name)
        if refused is not None:
            return None, refused
        realm = self.realms.get(name)
        if realm is None:
            self._record(request, 404, name)
            return None, JSONResponse({"error": "Realm not found."}, 404)
        if not self._may_manage(realm) and not read_only:
            self._record(request, 403, name)
            return None, JSONResponse({"error": "HTTP 403 Forbidden"}, 403)
        return realm, None

    def _refuse(self, request: Request, realm: str | None, status: int, body: Any) -> Response:
        self._record(request, status, realm)
        return JSONResponse(body, status)

    async def _client_for(self, request: Request) -> tuple[AdminRealm, str, dict[str, Any]] | Response:
        """(realm, its name, the client in the path), or the refusal (403/404...)."""
        realm, refused = await self._realm_for(request)
        if realm is None:
            return refused  # type: ignore[return-value]
        name = str(realm.top["realm"])
        client = realm.clients.get(str(request.path_params["client"]))
        if client is None:
            return self._refuse(request, name, 404, {"error": "Could not find client"})
        return realm, name, client

    def _ok(self, request: Request, realm: str | None, body: Any = None, status: int = 200) -> Response:
        self._record(request, status, realm)
        if status == 204:
            return Response(status_code=204)
        if status == 201:
            return Response(status_code=201)
        return JSONResponse(body, status)

    @staticmethod
    async def _json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            return None

    # ---- token (called by FakeKeycloak's token endpoint for the admin realm) -------------

    async def token(self, request: Request, client_id: str, secret: str, grant: str) -> Response:
        """The client-credentials grant of the admin client."""
        assert self._client is not None  # noqa: S101 - FakeKeycloak routes here only when configured
        if self._mode == "down":
            self._record(request, 503, None)
            return PlainTextResponse("Service Unavailable", status_code=503)
        await self._gate.wait()
        if grant != "client_credentials":
            return self._refuse(request, None, 400, {"error": "unsupported_grant_type"})
        if client_id != self._client[1] or not hmac.compare_digest(secret.encode(), self._client[2].encode()):
            self._record(request, 401, None)
            return JSONResponse(
                {"error": "unauthorized_client", "error_description": "Invalid client or Invalid client credentials"},
                401,
            )
        head = secrets.token_urlsafe(32)
        token = head + "." + "r" * max(0, self.token_bytes() - len(head) - 1)
        self._tokens[token] = time.time() + self.token_lifetime
        self._record(request, 200, None)
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }
        )
