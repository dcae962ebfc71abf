"""What Hasura sends the auth hook, in either mode, reduced to the few fields we use. Pure.

Rules of this module:
- GET mode: the client's headers arrive as HTTP headers (Hasura strips a fixed list and sets its
  own User-Agent). POST mode: they arrive in the JSON body's `headers` object, keys in the client's
  original case. Names are compared case-insensitively in both modes.
- Only `Authorization` (the token) and `X-Hasura-Role` (a role request) decide anything. The
  client IP, user agent and request id are recorded for operators, marked untrusted.
- Two `Authorization` headers (or two keys differing only in case) are ambiguous: rejected. So are
  two `X-Hasura-Role` headers (`role_not_allowed`): we never guess which role was meant.
- A POST body that is not Hasura's shape is the caller's error (`BadHookBody`, answered 400),
  not a bad token. `request` may be an object, an array, null or absent: it is never read (a body
  larger than MAX_BODY_BYTES is not even held: `webhook/core/hookbody.py` keeps only `headers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Final, Literal, NamedTuple

import orjson

from webhook.core.reasons import Reason, Rejected

MAX_FORWARDED_CHARS: Final = 256
_OWS: Final = " \t"
_WANTED: Final = {
    "authorization": "authorization",
    "x-hasura-role": "role",
    "x-forwarded-for": "ip",
    "x-real-ip": "real_ip",
    "user-agent": "ua",
    "x-request-id": "request_id",
}
_WANTED_BYTES: Final = {k.encode(): v for k, v in _WANTED.items()}


class BadHookBody(ValueError):
    """The POST body is not `{"headers": {...}, "request": ...}`; the message says what is wrong."""


class HookRequest(NamedTuple):
    """The parts of one hook call that matter; everything but `authorization`/`role` is untrusted.

    A NamedTuple rather than a frozen dataclass: it is built on every request and is ~3x cheaper.
    """

    mode: Literal["GET", "POST"]
    authorization: str | None = None
    role: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    ambiguous: bool = False
    role_ambiguous: bool = False


_NOT_REPEATED: Final[frozenset[str]] = frozenset()


def _build(mode: Literal["GET", "POST"], found: dict[str, str], repeated: AbstractSet[str]) -> HookRequest:
    """The request from the first value of each wanted field (`found`) and the fields seen again."""
    ip = found.get("ip")
    if ip is not None:
        ip = ip.split(",", 1)[0].strip()
    ip = ip or found.get("real_ip")
    ua, request_id = found.get("ua"), found.get("request_id")
    return HookRequest(
        mode,
        found.get("authorization"),
        found.get("role"),
        ip[:MAX_FORWARDED_CHARS] if ip else None,
        None if ua is None else ua[:MAX_FORWARDED_CHARS],
        None if request_id is None else request_id[:MAX_FORWARDED_CHARS],
        "authorization" in repeated,
        "role" in repeated,
    )


def from_get(headers: Iterable[tuple[bytes, bytes]]) -> HookRequest:
    """GET mode: ASGI headers (lowercase names, latin-1 bytes). One loop, no per-header objects
    beyond the decoded values: this runs on every GraphQL request."""
    wanted = _WANTED_BYTES.get
    found: dict[str, str] = {}
    repeated: set[str] | None = None
    for name, value in headers:
        field = wanted(name)
        if field is None:
            continue
        if field in found:
            if repeated is None:
                repeated = set()
            repeated.add(field)
        else:
            found[field] = value.decode("latin-1")
    return _build("GET", found, _NOT_REPEATED if repeated is None else repeated)


def from_post(body: bytes) -> HookRequest:
    """POST mode: Hasura's JSON body; `BadHookBody` if it is not that shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadHookBody("body is not JSON") from None
    if type(data) is not dict:
        raise BadHookBody("body is not a JSON object")
    return _from_headers(data.get("headers"))


def from_post_headers(raw: bytes) -> HookRequest:
    """POST mode, from the raw JSON text of the body's `headers` value alone (a large body's, as
    `webhook/core/hookbody.py` extracts it); `BadHookBody` if it is not an object of strings."""
    try:
        headers = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadHookBody("body is not JSON") from None
    return _from_headers(headers)


def _from_headers(headers: object) -> HookRequest:
    if type(headers) is not dict:
        raise BadHookBody('body has no "headers" object')
    found: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in headers.items():
        field = _WANTED.get(name.lower())
        if field is None:
            continue
        if type(value) is not str:
            raise BadHookBody(f'header "{name[:64]}" is not a string')
        if field in found:
            repeated.add(field)
        else:
            found[field] = value
    return _build("POST", found, repeated)


def bearer_token(request: HookRequest) -> str | None:
    """The bearer token, None if there is no `Authorization` at all; `Rejected` if it is unusable."""
    value = request.authorization
    if request.ambiguous:
        raise Rejected(Reason.MALFORMED_TOKEN, "more than one Authorization header")
    if value is None:
        return None
    # Only HTTP's optional whitespace (SP, HTAB) surrounds a credential: `str.strip()` would also
    # drop Unicode spaces and separators (U+3000, U+0085, U+001C...) and accept them around a token.
    scheme, _, token = value.strip(_OWS).partition(" ")
    if scheme.lower() != "bearer":
        raise Rejected(Reason.MALFORMED_TOKEN, "Authorization scheme is not Bearer")
    token = token.strip(_OWS)
    if not token:
        raise Rejected(Reason.MALFORMED_TOKEN, "Authorization Bearer value is empty")
    return token


def requested_role(request: HookRequest) -> str | None:
    """The role asked for with `X-Hasura-Role`, if any; `Rejected` if it was given twice."""
    if request.role_ambiguous:
        raise Rejected(Reason.ROLE_NOT_ALLOWED, "more than one X-Hasura-Role header")
    return request.role
