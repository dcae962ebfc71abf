"""The auth hook endpoint (`GET`/`POST /hasura/auth`), as a plain ASGI app on the hot path.

Rules of this module:
- 200 with a JSON object of strings when a session opens; 401 for every bad or missing token
  (Hasura turns any other status into a 500); 400 only when a POST body is not Hasura's shape
  (its size alone never is: past MAX_BODY_BYTES only the `headers` member is kept); 405 for other
  methods.
- Every decision is counted in metrics and logged once; every rejection is also submitted to the
  audit sink. The token is never logged, echoed or stored: only its SHA-256 is.
- This module reads headers straight from the ASGI scope and writes raw ASGI messages: Hasura
  calls it on every GraphQL request, so it avoids per-request framework objects.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import orjson
from starlette.types import Receive, Scope, Send

from webhook.audit.record import AuditSink, RejectionRecord, token_digest
from webhook.auth.verifier import TokenRejected, Verifier
from webhook.core.hookbody import HeadersScanner
from webhook.core.hookrequest import (
    BadHookBody,
    HookRequest,
    bearer_token,
    from_get,
    from_post,
    from_post_headers,
    requested_role,
)
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import Identity, anonymous_session, choose_role, session_json
from webhook.core.token import TokenFacts
from webhook.observability.decisionlog import DecisionLog
from webhook.observability.metrics import Metrics

_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
# Request ids for rejections Hasura sent without X-Request-Id: a random per-process prefix and a
# counter (unique, and without uuid4's urandom call on every rejected request).
_REQUEST_PREFIX: Final = os.urandom(8).hex()
_REQUEST_NUMBER: Final = itertools.count(1)


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


async def _read_post(receive: Receive, limit: int) -> HookRequest:
    """The hook request in a POST body; `BadHookBody` if the body is not Hasura's shape.

    A body up to `limit` bytes is parsed whole; past it, the chunks go through `HeadersScanner`,
    which keeps only the `headers` member (Hasura's default SEND_REQUEST_BODY=true puts the whole
    GraphQL request beside it, which may be large for a valid user).
    """
    chunks: list[bytes] = []
    size = 0
    scanner: HeadersScanner | None = None
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if scanner is not None:
            scanner.feed(chunk)
        else:
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                scanner = HeadersScanner(limit)
                for kept in chunks:
                    scanner.feed(kept)
                chunks.clear()
        if not message.get("more_body", False):
            break
    if scanner is not None:
        return from_post_headers(scanner.finish())
    return from_post(b"".join(chunks))


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
            try:
                request = await _read_post(receive, services.max_body_bytes)
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
        try:
            role = choose_role(identity, requested_role(request))
            session = session_json(identity, role, services.wall_clock())
        except Rejected as exc:  # a verified token: its realm and user belong in the audit and metrics
            _reject(services, request, exc, identity)
            return 401, orjson.dumps({"error": "unauthorized", "reason": exc.reason.value})
    except Rejected as exc:
        _reject(services, request, exc)
        return 401, orjson.dumps({"error": "unauthorized", "reason": exc.reason.value})
    finally:
        services.metrics.decision.observe(time.perf_counter() - started)
    services.metrics.decision.allowed += 1
    services.log.write_allow(identity.realm.name, identity.user_id, role, identity.kind, request.request_id)
    return 200, session


def _reject(services: HookServices, request: HookRequest, exc: Rejected, identity: Identity | None = None) -> None:
    if isinstance(exc, TokenRejected):
        facts, realm = exc.facts, (exc.realm.name if exc.realm is not None else None)
    elif identity is not None:  # the token verified; the request's role did not fit it
        facts, realm = TokenFacts(sub=identity.user_id), identity.realm.name
    else:
        facts, realm = TokenFacts(), None
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
        request_id=request.request_id or f"{_REQUEST_PREFIX}{next(_REQUEST_NUMBER):016x}",
    )
    services.metrics.decision.rejected[exc.reason] += 1
    services.audit.submit(record)
    services.log.write({"result": "reject", "request_id": record.request_id, **record.as_log_fields()})
