"""A stand-in for Hasura v2 calling an auth webhook, and reading its answer, exactly as Hasura does.

Rules of this module (from Hasura's ``Auth/WebHook.hs``, see shared/design/hasura.md 1.3-1.6):
- GET mode: ``GET <hook URL>`` with no query string, carrying the client headers minus Hasura's
  ``commonClientHeadersIgnored`` (case-insensitive, duplicates kept), then ``Content-Type: application/json``
  and ``User-Agent: hasura-graphql-engine/<version>`` added or overwritten.
- POST mode: only those two request headers; body ``{"headers": {...}, "request": ...}`` where ``headers``
  holds every client header unfiltered under its original-case name (an exact-name duplicate keeps the last
  value) and ``request`` is the GraphQL request (object, batched array or null), absent when the request
  body is not sent.
- No header of the HTTP client's own defaults leaks in: apart from ``Host`` and ``Content-Length`` the hook
  sees only what Hasura sends.
- Actions (``call_action``, hasura.md 2.1-2.2): ``POST <handler>`` with body ``{"action": {"name"}, "input",
  "session_variables" (lowercase keys), "request_query"}`` and the headers of ``callWebhook``: the configured
  headers, then ``Content-Type``/``User-Agent``, then the forwarded client headers (``X-Forwarded-Host``,
  ``-User-Agent``, ``-Origin`` from the client's ``Host``, ``User-Agent``, ``Origin``, plus every client header
  but ``commonClientHeadersIgnored`` and ``x-hasura-*``), folded case-insensitively, the last one winning.
  The answer: 2xx must be JSON (an object holding every non-null output field, or null); 4xx must be
  ``{"message", "extensions"?, "code"?}`` (``extensions`` replace Hasura's, a bare ``code`` gives
  ``{"path": "$", "code"}``, neither gives ``unexpected``); anything else, or no answer, is ``unexpected``.
- Reading the answer: 200 with a JSON object of string values opens a session (keys case-insensitive,
  lower-cased here) if it holds a non-empty ``x-hasura-role``, else "invalid-params"; 200 with anything else,
  any status other than 200/401, and a failed request are "unexpected"; 401 is "access-denied". The expiry
  comes from the body's exact-case ``Cache-Control`` (first ``max-age``/``s-maxage``), else ``Expires``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx

__all__ = [
    "COMMON_CLIENT_HEADERS_IGNORED",
    "DEFAULT_QUERY",
    "ActionVerdict",
    "HasuraStandIn",
    "HasuraVerdict",
    "Outcome",
    "RequestForm",
    "action_headers",
    "classify_action_response",
    "classify_hook_response",
]

Outcome = Literal["session", "access-denied", "unexpected", "invalid-params"]
RequestForm = Literal["object", "array", "null", "absent"]

#: ``commonClientHeadersIgnored`` of Hasura's ``Hasura/Server/Utils.hs``, lower-cased.
COMMON_CLIENT_HEADERS_IGNORED: Final[frozenset[str]] = frozenset(
    name.lower()
    for name in (
        "Content-Length",
        "Content-MD5",
        "User-Agent",
        "Host",
        "Origin",
        "Referer",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Accept-Datetime",
        "Cache-Control",
        "Connection",
        "DNT",
        "Content-Type",
    )
)

#: The GraphQL request sent by default (keys a client omits, like ``variables``, are omitted too).
DEFAULT_QUERY: Final[dict[str, Any]] = {
    "query": "query ElectionEvents { sequent_backend_election_event { id name } }",
    "operationName": "ElectionEvents",
}
_SECOND_QUERY: Final[dict[str, Any]] = {"query": "query { __typename }"}

_UNEXPECTED = "Invalid response from authorization hook"
_DENIED = "Authentication hook unauthorized this request"
_NO_ROLE = "x-hasura-role not found in session variables"
_FAILED = "webhook authentication request failed"
_NOT_SESSION: Final = frozenset({"cache-control", "expires", "x-hasura-admin-secret", "x-hasura-access-key"})
_EXPIRES_FORMAT = "%a, %d %b %Y %H:%M:%S GMT"


@dataclass(frozen=True, slots=True)
class HasuraVerdict:
    """What Hasura makes of one auth webhook call."""

    hook_status: int  # 0 when no HTTP answer came back (connect error, timeout)
    hook_body: bytes
    outcome: Outcome
    session: dict[str, str] | None  # only for outcome "session"; keys lower-cased
    expires_in: int | None
    error: str | None
    set_cookies: tuple[str, ...] = ()  # Hasura forwards the hook's Set-Cookie headers to the client

    @property
    def role(self) -> str | None:
        return self.session.get("x-hasura-role") if self.session is not None else None


def _max_age(cache_control: str) -> int | None:
    """Hasura's ``parseMaxAge``: the first ``max-age``/``s-maxage`` directive (names case-sensitive)."""
    for directive in cache_control.split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("max-age", "s-maxage"):
            value = value.strip().strip('"')
            return int(value) if value.isascii() and value.isdigit() else None
    return None


def _expires_in(raw: Mapping[str, str], now: datetime.datetime) -> int | None:
    if "Cache-Control" in raw:
        return _max_age(raw["Cache-Control"])
    if "Expires" in raw:
        try:
            expires = datetime.datetime.strptime(raw["Expires"], _EXPIRES_FORMAT).replace(tzinfo=datetime.UTC)
        except ValueError:
            return None
        return int((expires - now).total_seconds())
    return None


def classify_hook_response(
    status: int,
    body: bytes,
    *,
    set_cookies: Sequence[str] = (),
    now: datetime.datetime | None = None,
) -> HasuraVerdict:
    """Interpret a hook answer the way Hasura v2 does (``mkUserInfoFromResp``)."""
    cookies = tuple(set_cookies)
    if status == 401:
        return HasuraVerdict(status, body, "access-denied", None, None, _DENIED, cookies)
    if status != 200:
        return HasuraVerdict(status, body, "unexpected", None, None, _UNEXPECTED, cookies)
    try:
        decoded: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return HasuraVerdict(status, body, "unexpected", None, None, f"{_UNEXPECTED}: {exc}", cookies)
    if not isinstance(decoded, dict):
        error = f"{_UNEXPECTED}: expected Object, but encountered {type(decoded).__name__}"
        return HasuraVerdict(status, body, "unexpected", None, None, error, cookies)
    for key, value in decoded.items():
        if not isinstance(value, str):
            error = f"{_UNEXPECTED}: key {key!r}: expected String, but encountered {type(value).__name__}"
            return HasuraVerdict(status, body, "unexpected", None, None, error, cookies)
    raw: dict[str, str] = decoded
    expires_in = _expires_in(raw, now or datetime.datetime.now(datetime.UTC))
    session = {key.lower(): value for key, value in raw.items() if key.lower() not in _NOT_SESSION}
    if not session.get("x-hasura-role"):
        return HasuraVerdict(status, body, "invalid-params", None, expires_in, _NO_ROLE, cookies)
    return HasuraVerdict(status, body, "session", session, expires_in, None, cookies)


def _header_pairs(headers: Sequence[tuple[str, str]] | Mapping[str, str]) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return [(str(name), str(value)) for name, value in headers.items()]
    return [(str(name), str(value)) for name, value in headers]


class HasuraStandIn:
    """Calls an auth hook as Hasura v2 would for one client request, and says what Hasura would conclude."""

    def __init__(
        self,
        hook_url: str,
        *,
        mode: Literal["GET", "POST"],
        client: httpx.AsyncClient,
        send_request_body: bool = True,
        version: str = "v2.44.0",
        actions_url: str | None = None,
    ) -> None:
        self.hook_url = hook_url
        self.mode = mode
        self.client = client
        self.send_request_body = send_request_body
        self.version = version
        self.actions_url = actions_url

    @property
    def user_agent(self) -> str:
        return f"hasura-graphql-engine/{self.version}"

    def _default_headers(self) -> list[tuple[str, str]]:
        # Hasura's addDefaultHeaders
        return [("Content-Type", "application/json"), ("User-Agent", self.user_agent)]

    def build_request(
        self,
        client_headers: Sequence[tuple[str, str]] | Mapping[str, str],
        request: Any = DEFAULT_QUERY,
        *,
        request_form: RequestForm | None = None,
    ) -> httpx.Request:
        """The exact HTTP request Hasura would send to the hook (see ``authenticate``)."""
        pairs = _header_pairs(client_headers)
        forwarded: set[str] = set()
        if self.mode == "GET":
            overwritten = {"content-type", "user-agent"}
            kept = [
                (name, value)
                for name, value in pairs
                if name.lower() not in COMMON_CLIENT_HEADERS_IGNORED and name.lower() not in overwritten
            ]
            forwarded = {name.lower() for name, _ in kept}
            built = self.client.build_request("GET", self.hook_url, headers=[*kept, *self._default_headers()])
        else:
            body: dict[str, Any] = {"headers": dict(pairs)}
            if self.send_request_body and request_form != "absent":
                if request_form == "array":
                    body["request"] = [request, _SECOND_QUERY]
                elif request_form == "null":
                    body["request"] = None
                else:
                    body["request"] = request
            content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            built = self.client.build_request("POST", self.hook_url, headers=self._default_headers(), content=content)
        # Drop whatever the HTTP client adds by default (Accept, Accept-Encoding, its User-Agent...).
        allowed = forwarded | {"content-type", "user-agent", "host", "content-length"}
        for name in {name.lower() for name in built.headers}:
            if name not in allowed:
                del built.headers[name]
        return built

    async def authenticate(
        self,
        client_headers: Sequence[tuple[str, str]] | Mapping[str, str],
        request: Any = DEFAULT_QUERY,
        *,
        request_form: RequestForm | None = None,
    ) -> HasuraVerdict:
        """Authenticate one client request whose headers are ``client_headers``.

        ``request`` is the GraphQL request the client sent (POST mode only). ``request_form`` picks the
        shape of ``"request"`` in the POST body: "object" (``request`` itself, as when None), "array"
        (a batch of ``request`` and a second query), "null" (websocket ``connection_init``, REST
        endpoints, an unparseable body) or "absent" (as with ``SEND_REQUEST_BODY=false``).
        Redirects are followed (Hasura's HTTP client does); a transport failure is "unexpected".
        """
        built = self.build_request(client_headers, request, request_form=request_form)
        try:
            response = await self.client.send(built, follow_redirects=True)
        except httpx.HTTPError:
            return HasuraVerdict(0, b"", "unexpected", None, None, _FAILED)
        return classify_hook_response(
            response.status_code, response.content, set_cookies=response.headers.get_list("set-cookie")
        )

    # ---- actions

    def action_url(self, action_name: str) -> str:
        """The handler URL of an action: ``actions_url`` (default: the hook's origin + ``/actions``) + name."""
        base = self.actions_url
        if base is None:
            parts = urlsplit(self.hook_url)
            base = f"{parts.scheme}://{parts.netloc}/actions"
        return f"{base.rstrip('/')}/{action_name}"

    async def call_action(
        self,
        action_name: str,
        input: Mapping[str, Any],
        session_variables: Mapping[str, str],
        client_headers: Sequence[tuple[str, str]] | Mapping[str, str],
        *,
        secret: str | None,
        secret_header: str = "X-Actions-Secret",  # noqa: S107 - a header name
        required: Sequence[str] = ("id",),
        request_query: str | None = None,
        handler_url: str | None = None,
        timeout_seconds: float = 30.0,
    ) -> ActionVerdict:
        """Call a synchronous action's handler as Hasura does and judge the answer as Hasura would.

        ``secret`` is the value of the configured ``secret_header`` (None: no configured header);
        ``required`` lists the output type's non-null fields; ``timeout_seconds`` is the action's ``timeout``
        (Hasura's default: 30).
        """
        conf = [(secret_header, secret)] if secret is not None else []
        headers = action_headers(conf, self._default_headers(), client_headers)
        body = {
            "action": {"name": action_name},
            "input": dict(input),
            "session_variables": {name.lower(): value for name, value in session_variables.items()},
            "request_query": request_query,
        }
        content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        built = self.client.build_request(
            "POST",
            handler_url or self.action_url(action_name),
            headers=headers,
            content=content,
            timeout=timeout_seconds,
        )
        allowed = {name.lower() for name, _ in headers} | {"host", "content-length"}
        for name in {name.lower() for name in built.headers}:
            if name not in allowed:
                del built.headers[name]
        sent = tuple(built.headers.multi_items())
        try:
            response = await self.client.send(built)
        except httpx.HTTPError:
            return ActionVerdict(0, b"", "unexpected", None, _ACTION_FAILED, None, sent)
        return classify_action_response(response.status_code, response.content, required=required, sent=sent)


@dataclass(frozen=True, slots=True)
class ActionVerdict:
    """What Hasura makes of one action handler call."""

    status: int  # 0 when no HTTP answer came back
    body: bytes
    outcome: Literal["data", "error", "unexpected"]
    data: Any  # the action's output (outcome "data")
    message: str | None  # the GraphQL error message (outcomes "error" and "unexpected")
    extensions: dict[str, Any] | None  # the GraphQL error's extensions (outcome "error")
    sent_headers: tuple[tuple[str, str], ...] = ()  # what the handler received

    @property
    def code(self) -> str | None:
        """The error code the client sees: ``extensions.code``, or "unexpected"."""
        if self.outcome == "unexpected":
            return "unexpected"
        if self.extensions is None:
            return None
        code = self.extensions.get("code")
        return code if isinstance(code, str) else None


_ACTION_FAILED = "http exception when calling webhook"
_NOT_JSON = "not a valid json response from webhook"
_INTERNAL = "internal error"


def action_headers(
    configured: Sequence[tuple[str, str]],
    defaults: Sequence[tuple[str, str]],
    client_headers: Sequence[tuple[str, str]] | Mapping[str, str],
) -> list[tuple[str, str]]:
    """Hasura's ``callWebhook`` headers: ``Map.fromList (conf <> defaults <> mkClientHeadersForward client)``."""
    pairs = _header_pairs(client_headers)
    renamed = {"host": "X-Forwarded-Host", "user-agent": "X-Forwarded-User-Agent", "origin": "X-Forwarded-Origin"}
    forwarded = [(renamed[name.lower()], value) for name, value in pairs if name.lower() in renamed]
    forwarded += [
        (name, value)
        for name, value in pairs
        if name.lower() not in COMMON_CLIENT_HEADERS_IGNORED and not name.lower().startswith("x-hasura-")
    ]
    folded: dict[str, tuple[str, str]] = {}
    for name, value in [*configured, *defaults, *forwarded]:
        folded[name.lower()] = (name, value)
    return list(folded.values())


def classify_action_response(
    status: int, body: bytes, *, required: Sequence[str] = ("id",), sent: tuple[tuple[str, str], ...] = ()
) -> ActionVerdict:
    """Interpret an action handler's answer the way Hasura v2 does (``callWebhook``)."""
    try:
        decoded: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        decoded = _NOT_DECODED
    if 200 <= status < 300:
        if decoded is _NOT_DECODED:
            return ActionVerdict(status, body, "unexpected", None, _NOT_JSON, None, sent)
        if decoded is None:
            return ActionVerdict(status, body, "data", None, None, None, sent)
        if not isinstance(decoded, dict):
            message = f"expecting object for action output, got {type(decoded).__name__}"
            return ActionVerdict(status, body, "unexpected", None, message, None, sent)
        for name in required:
            if decoded.get(name) is None:
                message = f'expecting not null value for field "{name}"'
                return ActionVerdict(status, body, "unexpected", None, message, None, sent)
        return ActionVerdict(status, body, "data", decoded, None, None, sent)
    if 400 <= status < 500:
        if not isinstance(decoded, dict) or not isinstance(decoded.get("message"), str):
            return ActionVerdict(status, body, "unexpected", None, _INTERNAL, None, sent)
        extensions = decoded.get("extensions")
        if isinstance(extensions, dict):
            shown = dict(extensions)
        elif isinstance(decoded.get("code"), str):
            shown = {"path": "$", "code": decoded["code"]}
        else:
            shown = {"path": "$", "code": "unexpected"}
        return ActionVerdict(status, body, "error", None, decoded["message"], shown, sent)
    return ActionVerdict(status, body, "unexpected", None, _INTERNAL, None, sent)


_NOT_DECODED: Final = object()
