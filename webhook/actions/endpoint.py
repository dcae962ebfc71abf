"""`POST /actions/{action_name}`: the Starlette endpoint Hasura calls for every action.

Rules of this module:
- In this order: Hasura's shared secret, the action's name (unknown: 404 `not-found`), the body
  (size-capped, Hasura's envelope, `action.name` equal to the path's), the caller's token and its
  agreement with the session, the schema's readiness, then the action's handler.
- 200 with the handler's JSON object; any refusal is an `ActionError` in Hasura's 4xx shape. Database
  outages are 424 `unavailable`; anything unexpected is logged with its traceback and answered 500
  `internal` with a fixed message: no exception text, SQL or stack trace ever reaches the client.
- One log line per call (`action.call`: action, code, realm, ids, user, request id, duration) and one
  count in `webhook_actions_total{action,code}`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from webhook.actions.auth import ActionAuth, CallContext, Caller
from webhook.actions.context import ActionContext
from webhook.actions.envelope import parse_envelope
from webhook.actions.errors import ActionError, Code
from webhook.actions.registry import ActionRegistry
from webhook.observability.metrics import Metrics

UNKNOWN_ACTION: Final = "unknown"
_JSON: Final = "application/json"


@dataclass(frozen=True, slots=True)
class ActionServices:
    """What the endpoint needs, built once by the app's lifespan."""

    auth: ActionAuth
    context: ActionContext | None  # None: no database configured (then ACTIONS_SECRET is unset too)
    metrics: Metrics
    log: Any
    max_body_bytes: int


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ActionError(Code.VALIDATION_FAILED, "the request body is larger than MAX_BODY_BYTES")
        chunks.append(chunk)
    return b"".join(chunks)


class ActionsEndpoint:
    """Dispatches action calls to the registry's handlers; `services` is set by the lifespan."""

    def __init__(self, registry: ActionRegistry, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self.registry = registry
        self.services: ActionServices | None = None
        self._clock = clock

    async def handle(self, request: Request) -> Response:
        """The Starlette endpoint (a request-response function)."""
        started = self._clock()
        name = str(request.path_params.get("action_name", ""))
        label = name if self.registry.get(name) is not None else UNKNOWN_ACTION
        services = self.services
        if services is None:
            return _error(ActionError(Code.UNAVAILABLE, "the service is starting; retry shortly"))
        context = CallContext.from_headers(request.headers)
        fields: dict[str, Any] = {"action": label, "request_id": context.request_id}
        try:
            output = await self._handle(services, request, name, context, fields)
        except ActionError as exc:
            response = _error(exc)
            code = exc.code.value
        except (SQLAlchemyError, OSError, TimeoutError) as exc:  # the handlers' only IO is the database
            services.log.warning("action.database_error", error=type(exc).__name__, **fields)
            response = _error(ActionError(Code.UNAVAILABLE, "the database is unavailable; retry later"))
            code = Code.UNAVAILABLE.value
        except Exception:
            services.log.error("action.crashed", traceback=traceback.format_exc()[-4000:], **fields)
            response = _error(ActionError(Code.INTERNAL, "internal error"))
            code = Code.INTERNAL.value
        else:
            response = Response(orjson.dumps(output), media_type=_JSON)
            code = "ok"
        services.metrics.actions.labels(label, code).inc()
        services.log.info("action.call", code=code, seconds=round(self._clock() - started, 6), **fields)
        return response

    async def _handle(
        self, services: ActionServices, request: Request, name: str, context: CallContext, fields: dict[str, Any]
    ) -> dict[str, Any]:
        services.auth.check_secret(request.headers, context)
        action = self.registry.get(name)
        if action is None:
            raise ActionError(Code.NOT_FOUND, "no such action")
        call = parse_envelope(await _read_body(request, services.max_body_bytes))
        if call.name != name:
            raise ActionError(Code.VALIDATION_FAILED, "action.name in the body is not the action of the URL")
        caller: Caller = await services.auth.caller(request.headers, call.session_variables, context)
        identity = caller.identity
        fields.update(realm=identity.realm.name, sub=identity.user_id, tenant_id=identity.tenant_id, role=caller.role)
        context_ = services.context
        if context_ is None:
            raise ActionError(Code.UNAVAILABLE, "the actions have no database")
        if not context_.store.ready.is_set():
            raise ActionError(Code.UNAVAILABLE, "the database is being migrated; retry shortly")
        output = await action.handler(context_, call, caller)
        fields.update(id=output.get("id"), created_realm=output.get("realm"), provisioning=output.get("provisioning"))
        return output


def _error(exc: ActionError) -> Response:
    return Response(exc.body(), status_code=exc.status, media_type=_JSON)


__all__ = ["ActionServices", "ActionsEndpoint"]
