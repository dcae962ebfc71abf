"""`POST /keycloak/backchannel-logout`: OIDC Back-Channel Logout 1.0, section 2.5 and 2.8.

Rules of this module:
- The request is what the spec and Keycloak send: `application/x-www-form-urlencoded` with exactly
  one `logout_token`, at most `max_body_bytes` (a few KB above the token size cap). Anything else
  is a 400 with a reason code; other methods a 405.
- The token is verified by `Verifier.verify_logout` (the access-token realm binding, keys and
  signature, then the logout claims), then taken by `RevocationService.take_logout`. 200 (empty
  body) when taken; 400 `{"error": "invalid_request", "reason": ...}` otherwise; 503 when it could
  not be stored (held by this process only); 404 when revocations are off. Every answer has
  `Cache-Control: no-store`.
- A rejected logout token is audited like a rejected access token (source `hook`, hook mode
  `logout`): only its SHA-256 and what it claimed. A rejected token revokes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from webhook.audit.record import AuditSink, RejectionRecord, token_digest
from webhook.auth.verifier import TokenRejected, Verifier
from webhook.core.reasons import Reason, Rejected
from webhook.core.token import TokenFacts
from webhook.revocation.service import RevocationService, RevocationUnavailable

PATH: Final = "/keycloak/backchannel-logout"
HOOK_MODE: Final = "logout"
FORM_TYPE: Final = "application/x-www-form-urlencoded"
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True, slots=True)
class LogoutServices:
    """What the endpoint needs, built by the app's lifespan."""

    verifier: Verifier
    revocations: RevocationService
    audit: AuditSink
    audiences: frozenset[str]
    max_body_bytes: int
    wall_clock: Callable[[], float]
    log: Any


def _answer(status: int, body: dict[str, str] | None = None) -> Response:
    content = b"" if body is None else orjson.dumps(body)
    media = None if body is None else "application/json"
    return Response(content, status_code=status, headers=_NO_STORE, media_type=media)


def _bad(reason: Reason, detail: str) -> Response:
    return _answer(400, {"error": "invalid_request", "reason": reason.value, "detail": detail})


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def logout_token_of(body: bytes) -> str:
    """The one `logout_token` of a form body; `Rejected(malformed_token)` otherwise."""
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(Reason.MALFORMED_TOKEN, "body is not a form") from None
    tokens = [value for name, value in pairs if name == "logout_token"]
    if len(tokens) != 1 or not tokens[0]:
        raise Rejected(Reason.MALFORMED_TOKEN, "exactly one logout_token is required")
    return tokens[0]


class BackchannelLogout:
    """The endpoint; `services` is set by the lifespan (None: 503)."""

    def __init__(self) -> None:
        self.services: LogoutServices | None = None
        self.enabled = True  # the lifespan sets it: False when REVOCATIONS is off (404)

    async def handle(self, request: Request) -> Response:
        services = self.services
        if services is None:
            if not self.enabled:
                return _answer(404, {"error": "revocations are not enabled (REVOCATIONS)"})
            return _answer(503, {"error": "unavailable"})
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM_TYPE:
            return _bad(Reason.MALFORMED_TOKEN, "Content-Type must be application/x-www-form-urlencoded")
        body = await _bounded_body(request, services.max_body_bytes)
        if body is None:
            return _bad(Reason.MALFORMED_TOKEN, "body larger than the limit")
        try:
            token = logout_token_of(body)
        except Rejected as exc:
            self._audit(services, request, exc, None)
            services.revocations.stats.received["rejected"] += 1
            return _bad(exc.reason, exc.detail)
        try:
            realm, claims = await services.verifier.verify_logout(token, audiences=services.audiences)
        except TokenRejected as exc:
            self._audit(services, request, exc, exc.digest.hex())
            services.revocations.stats.received["rejected"] += 1
            return _bad(exc.reason, exc.detail)
        try:
            result = await services.revocations.take_logout(realm, claims)
        except RevocationUnavailable:
            services.revocations.stats.received["unavailable"] += 1
            services.log.warning("revocations.store_failed", realm=realm.name)
            return _answer(503, {"error": "unavailable"})
        services.revocations.stats.received[result] += 1
        if result == "replayed":
            replay = TokenRejected(
                Rejected(Reason.TOKEN_REPLAYED, "jti already taken"), TokenFacts(jti=claims.jti), realm, b""
            )
            self._audit(services, request, replay, token_digest(token))
            return _bad(Reason.TOKEN_REPLAYED, "jti already taken")
        services.log.info("revocations.taken", realm=realm.name, sid=claims.sid, sub=claims.sub)
        return _answer(200)

    @staticmethod
    def _audit(services: LogoutServices, request: Request, exc: Rejected, digest: str | None) -> None:
        facts = exc.facts if isinstance(exc, TokenRejected) else TokenFacts()
        realm = exc.realm.name if isinstance(exc, TokenRejected) and exc.realm is not None else None
        client = request.client
        services.audit.submit(
            RejectionRecord(
                at=services.wall_clock(),
                reason=exc.reason,
                detail=exc.detail,
                source="hook",
                hook_mode=HOOK_MODE,
                token_sha256=digest,
                realm=realm,
                facts=facts,
                client_ip=client.host if client is not None else None,
                user_agent=request.headers.get("user-agent"),
                request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
            )
        )


__all__ = ["PATH", "BackchannelLogout", "LogoutServices", "logout_token_of"]
