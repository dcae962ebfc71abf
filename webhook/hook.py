"""The auth hook endpoint (`GET`/`POST /hasura/auth`), as a plain ASGI app on the hot path.

Rules of this module:
- 200 with a JSON object of strings when a session opens; 401 for every bad or missing token
  (Hasura turns any other status into a 500); 400 only when a POST body is not Hasura's shape;
  405 for other methods.
- Every decision is counted in metrics and logged once; every rejection is also submitted to the
  audit sink. The token is never logged, echoed or stored: only its SHA-256 is.
- This module reads headers straight from the ASGI scope and writes raw ASGI messages: Hasura
  calls it on every GraphQL request, so it avoids per-request framework objects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import orjson
from starlette.types import Receive, Scope, Send

from webhook.audit import AuditSink, RejectionRecord, token_digest
from webhook.decisionlog import DecisionLog
from webhook.hookrequest import BadHookBody, HookRequest, bearer_token, from_get, from_post, requested_role
from webhook.metrics import Metrics
from webhook.reasons import Reason, Rejected
from webhook.session import anonymous_session, choose_role, session_for
from webhook.token import TokenFacts
from webhook.verifier import TokenRejected, Verifier

_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class HookServices:
    """What the hook needs, built once by the app's lifespan (the composition root)."""

    verifier: Verifier
    metrics: Metrics
    audit: AuditSink
    log: DecisionLog
    anonymous_role: str | None
    max_body_bytes: int
    wall_clock: Callable[[], float]


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class AuthHook:
    """ASGI app answering Hasura's auth webhook calls. `services` is set by the lifespan."""

    def __init__(self) -> None:
        self.services: HookServices | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services = self.services
        if services is None:
            await _respond(send, 503, b'{"error":"starting"}')
            return
        method = scope["method"]
        if method == "GET":
            request = from_get(scope["headers"])
        elif method == "POST":
            body = await _read_body(receive, services.max_body_bytes)
            if body is None:
                await _respond(send, 400, b'{"error":"body larger than MAX_BODY_BYTES"}')
                return
            try:
                request = from_post(body)
            except BadHookBody as exc:
                await _respond(send, 400, orjson.dumps({"error": str(exc)}))
                return
        else:
            await _respond(send, 405, b'{"error":"method not allowed"}', [(b"allow", b"GET, POST")])
            return
        status, answer = await decide(services, request)
        await _respond(send, status, answer)


async def decide(services: HookServices, request: HookRequest) -> tuple[int, bytes]:
    """The status and JSON body for one hook request; logs, counts and audits the decision."""
    started = time.perf_counter()
    try:
        token = bearer_token(request)
        if token is None:
            if services.anonymous_role is None:
                raise Rejected(Reason.MISSING_TOKEN, "no Authorization header")
            services.metrics.decision.anonymous += 1
            services.log.write(
                {"result": "anonymous", "role": services.anonymous_role, "request_id": request.request_id}
            )
            return 200, orjson.dumps(anonymous_session(services.anonymous_role))
        identity = await services.verifier.verify(token)
        role = choose_role(identity, requested_role(request))
        session = session_for(identity, role, services.wall_clock())
    except Rejected as exc:
        _reject(services, request, exc)
        return 401, orjson.dumps({"error": "unauthorized", "reason": exc.reason.value})
    finally:
        services.metrics.decision.observe(time.perf_counter() - started)
    services.metrics.decision.allowed += 1
    services.log.write(
        {
            "result": "allow",
            "realm": identity.realm.name,
            "sub": identity.user_id,
            "role": role,
            "kind": identity.kind,
            "request_id": request.request_id,
        }
    )
    return 200, orjson.dumps(session)


def _reject(services: HookServices, request: HookRequest, exc: Rejected) -> None:
    facts = exc.facts if isinstance(exc, TokenRejected) else TokenFacts()
    realm = exc.realm.name if isinstance(exc, TokenRejected) and exc.realm is not None else None
    record = RejectionRecord(
        at=services.wall_clock(),
        reason=exc.reason,
        detail=exc.detail,
        source="hook",
        hook_mode=request.mode,
        token_sha256=exc.digest.hex() if isinstance(exc, TokenRejected) else token_digest(request.authorization),
        realm=realm,
        facts=facts,
        client_ip=request.client_ip,
        user_agent=request.user_agent,
        request_id=request.request_id or uuid.uuid4().hex,
    )
    services.metrics.decision.rejected[exc.reason] += 1
    services.audit.submit(record)
    services.log.write({"result": "reject", "request_id": record.request_id, **record.as_log_fields()})
