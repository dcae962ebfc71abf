"""Tests of the Hasura stand-in: the requests it sends to an auth hook and how it reads the answers."""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from webhook.testing.hasura import (
    COMMON_CLIENT_HEADERS_IGNORED,
    DEFAULT_QUERY,
    HasuraStandIn,
    RequestForm,
    classify_hook_response,
)
from webhook.testing.server import serve_asgi

pytestmark = pytest.mark.anyio

CLIENT_HEADERS: list[tuple[str, str]] = [
    ("Host", "graphql.example"),
    ("User-Agent", "Mozilla/5.0"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, br"),
    ("Content-Type", "text/plain"),
    ("Content-Length", "123"),
    ("Origin", "https://admin.example"),
    ("Referer", "https://admin.example/x"),
    ("Cache-Control", "no-cache"),
    ("Connection", "keep-alive"),
    ("DNT", "1"),
    ("Authorization", "Bearer abc.def.ghi"),
    ("Cookie", "session=1"),
    ("X-Hasura-Role", "voter"),
    ("X-Forwarded-For", "203.0.113.9"),
    ("X-Request-Id", "req-1"),
    ("X-Custom", "first"),
    ("X-Custom", "second"),
]


@dataclass
class Seen:
    method: str
    path: str
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class EchoHook:
    """A tiny auth hook recording what it receives and answering with a configurable reply."""

    status: int = 200
    body: bytes = b'{"X-Hasura-Role": "user"}'
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        self.seen.append(Seen(scope["method"], scope["path"], scope["query_string"], headers, b"".join(chunks)))
        if scope["path"] == "/moved":
            await send({"type": "http.response.start", "status": 302, "headers": [(b"location", b"/hook")]})
            await send({"type": "http.response.body", "body": b""})
            return
        response_headers = [(b"content-type", b"application/json"), *self.headers]
        await send({"type": "http.response.start", "status": self.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
async def hook() -> AsyncIterator[tuple[EchoHook, str]]:
    echo = EchoHook()
    async with serve_asgi(echo, lifespan="off") as running:
        yield echo, running.url


def names(seen: Seen) -> list[str]:
    return [name.lower() for name, _ in seen.headers]


# ------------------------------------------------------------------------------------------ GET


async def test_get_forwards_client_headers_minus_the_ignored_list(
    hook: tuple[EchoHook, str], http: httpx.AsyncClient
) -> None:
    """GET mode drops commonClientHeadersIgnored, keeps the rest (duplicates too), adds no query string."""
    echo, url = hook
    verdict = await HasuraStandIn(f"{url}/hook", mode="GET", client=http).authenticate(CLIENT_HEADERS)
    assert verdict.outcome == "session"
    (seen,) = echo.seen
    assert (seen.method, seen.path, seen.query, seen.body) == ("GET", "/hook", b"", b"")
    forwarded = [(name, value) for name, value in seen.headers if name not in {"host", "content-type", "user-agent"}]
    assert forwarded == [
        ("authorization", "Bearer abc.def.ghi"),
        ("cookie", "session=1"),
        ("x-hasura-role", "voter"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-request-id", "req-1"),
        ("x-custom", "first"),
        ("x-custom", "second"),
    ]
    assert not COMMON_CLIENT_HEADERS_IGNORED - {"host", "content-type", "user-agent"} & set(names(seen))
    assert dict(seen.headers)["host"] == url.removeprefix("http://")


async def test_get_overwrites_user_agent_and_content_type(hook: tuple[EchoHook, str], http: httpx.AsyncClient) -> None:
    """GET mode sends Hasura's User-Agent and Content-Type: application/json, whatever the client sent."""
    echo, url = hook
    standin = HasuraStandIn(f"{url}/hook", mode="GET", client=http, version="v2.40.1")
    await standin.authenticate({"user-agent": "curl/8", "content-type": "text/plain", "Authorization": "x"})
    headers = echo.seen[0].headers
    assert [value for name, value in headers if name == "user-agent"] == ["hasura-graphql-engine/v2.40.1"]
    assert [value for name, value in headers if name == "content-type"] == ["application/json"]


async def test_get_header_names_are_matched_case_insensitively(
    hook: tuple[EchoHook, str], http: httpx.AsyncClient
) -> None:
    """Ignored header names are dropped in any case."""
    echo, url = hook
    await HasuraStandIn(url, mode="GET", client=http).authenticate([("ORIGIN", "o"), ("dnt", "1"), ("X-A", "a")])
    assert sorted(names(echo.seen[0])) == ["content-type", "host", "user-agent", "x-a"]


# ----------------------------------------------------------------------------------------- POST


async def test_post_sends_all_client_headers_in_the_body(hook: tuple[EchoHook, str], http: httpx.AsyncClient) -> None:
    """POST mode: only Content-Type and User-Agent as request headers; every client header in the body."""
    echo, url = hook
    await HasuraStandIn(f"{url}/hook", mode="POST", client=http).authenticate(
        [*CLIENT_HEADERS, ("authorization", "lower-case twin")]
    )
    (seen,) = echo.seen
    assert (seen.method, seen.path, seen.query) == ("POST", "/hook", b"")
    assert sorted(names(seen)) == ["content-length", "content-type", "host", "user-agent"]
    assert dict(seen.headers)["user-agent"] == "hasura-graphql-engine/v2.44.0"
    assert dict(seen.headers)["content-type"] == "application/json"
    body = seen.json()
    assert list(body) == ["headers", "request"]
    assert body["request"] == DEFAULT_QUERY
    assert body["headers"]["X-Custom"] == "second"
    assert body["headers"]["Authorization"] == "Bearer abc.def.ghi"
    assert body["headers"]["authorization"] == "lower-case twin"
    assert body["headers"]["User-Agent"] == "Mozilla/5.0"
    assert body["headers"]["Host"] == "graphql.example"
    assert len(body["headers"]) == len({name for name, _ in CLIENT_HEADERS}) + 1


@pytest.mark.parametrize(
    ("form", "send_body", "expected"),
    [
        (None, True, DEFAULT_QUERY),
        ("object", True, DEFAULT_QUERY),
        ("array", True, [DEFAULT_QUERY, {"query": "query { __typename }"}]),
        ("null", True, None),
        ("absent", True, "<absent>"),
        ("array", False, "<absent>"),
    ],
)
async def test_post_request_forms(
    hook: tuple[EchoHook, str],
    http: httpx.AsyncClient,
    *,
    form: RequestForm | None,
    send_body: bool,
    expected: Any,
) -> None:
    """POST mode sends "request" as an object, a batch, null, or not at all."""
    echo, url = hook
    standin = HasuraStandIn(url, mode="POST", client=http, send_request_body=send_body)
    await standin.authenticate({"Authorization": "Bearer t"}, request_form=form)
    body = echo.seen[0].json()
    assert body.get("request", "<absent>") == expected
    assert body["headers"] == {"Authorization": "Bearer t"}


async def test_post_sends_the_given_request(hook: tuple[EchoHook, str], http: httpx.AsyncClient) -> None:
    """The request argument is sent as given, e.g. with variables."""
    echo, url = hook
    query = {"query": "query Q($id: uuid!) { x(id: $id) }", "variables": {"id": "1"}, "operationName": "Q"}
    await HasuraStandIn(url, mode="POST", client=http).authenticate({}, query)
    assert echo.seen[0].json() == {"headers": {}, "request": query}


# -------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("status", "body", "outcome", "session"),
    [
        (
            200,
            b'{"X-Hasura-Role": "user", "X-Hasura-Id": "1"}',
            "session",
            {"x-hasura-role": "user", "x-hasura-id": "1"},
        ),
        (200, b'{"x-hasura-role": "anonymous"}', "session", {"x-hasura-role": "anonymous"}),
        (200, b'{"X-Hasura-User-Id": "u1"}', "invalid-params", None),
        (200, b'{"X-Hasura-Role": ""}', "invalid-params", None),
        (200, b'{"X-Hasura-Role": "user", "X-Hasura-Count": 3}', "unexpected", None),
        (200, b'{"X-Hasura-Role": "user", "nested": {}}', "unexpected", None),
        (200, b'["X-Hasura-Role"]', "unexpected", None),
        (200, b"<html>oops</html>", "unexpected", None),
        (200, b"", "unexpected", None),
        (401, b'{"X-Hasura-Role": "user"}', "access-denied", None),
        (403, b'{"error": "forbidden"}', "unexpected", None),
        (400, b"{}", "unexpected", None),
        (500, b"", "unexpected", None),
    ],
)
async def test_answers_are_classified_like_hasura(
    hook: tuple[EchoHook, str],
    http: httpx.AsyncClient,
    *,
    status: int,
    body: bytes,
    outcome: str,
    session: dict[str, str] | None,
) -> None:
    """200 + string-valued object with a role opens a session; everything else maps to Hasura's errors."""
    echo, url = hook
    echo.status, echo.body = status, body
    verdict = await HasuraStandIn(url, mode="GET", client=http).authenticate({"Authorization": "Bearer t"})
    assert (verdict.hook_status, verdict.hook_body) == (status, body)
    assert verdict.outcome == outcome
    assert verdict.session == session
    assert (verdict.error is None) == (outcome == "session")


async def test_session_drops_expiry_and_admin_secret_keys() -> None:
    """Cache-Control, Expires and admin-secret keys never become session variables."""
    body = {
        "X-Hasura-Role": "user",
        "Cache-Control": "max-age=60",
        "X-Hasura-Admin-Secret": "s",
        "x-hasura-access-key": "k",
    }
    verdict = classify_hook_response(200, json.dumps(body).encode())
    assert verdict.session == {"x-hasura-role": "user"}
    assert verdict.role == "user"


@pytest.mark.parametrize(
    ("extra", "expires_in"),
    [
        ({"Cache-Control": "max-age=600, private"}, 600),
        ({"Cache-Control": "private, s-maxage=30"}, 30),
        ({"Cache-Control": "no-store"}, None),
        ({"Cache-Control": "Max-Age=600"}, None),
        ({"cache-control": "max-age=600"}, None),
        ({"Cache-Control": "max-age=10", "Expires": "Thu, 01 Jan 2026 00:10:00 GMT"}, 10),
        ({"Expires": "Thu, 01 Jan 2026 00:10:00 GMT"}, 600),
        ({"Expires": "tomorrow"}, None),
        ({}, None),
    ],
)
async def test_expiry_follows_hasuras_parser(extra: dict[str, str], expires_in: int | None) -> None:
    """expires_in comes from exact-case Cache-Control (first max-age/s-maxage), else Expires."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    verdict = classify_hook_response(200, json.dumps({"X-Hasura-Role": "u", **extra}).encode(), now=now)
    assert verdict.outcome == "session"
    assert verdict.expires_in == expires_in


async def test_set_cookie_headers_are_reported(hook: tuple[EchoHook, str], http: httpx.AsyncClient) -> None:
    """Every Set-Cookie header of the hook's answer is kept (Hasura forwards them to the client)."""
    echo, url = hook
    echo.headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    verdict = await HasuraStandIn(url, mode="GET", client=http).authenticate({})
    assert verdict.set_cookies == ("a=1", "b=2")


async def test_redirects_are_followed(hook: tuple[EchoHook, str], http: httpx.AsyncClient) -> None:
    """A redirecting hook is followed, as Hasura's HTTP client does."""
    echo, url = hook
    verdict = await HasuraStandIn(f"{url}/moved", mode="GET", client=http).authenticate({})
    assert verdict.outcome == "session"
    assert [seen.path for seen in echo.seen] == ["/moved", "/hook"]


async def test_unreachable_hook_is_unexpected(http: httpx.AsyncClient) -> None:
    """A hook that cannot be reached gives "unexpected" with no status, like Hasura's 500."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verdict = await HasuraStandIn(f"http://127.0.0.1:{port}/hook", mode="POST", client=http).authenticate({})
    assert (verdict.hook_status, verdict.outcome, verdict.error) == (
        0,
        "unexpected",
        "webhook authentication request failed",
    )
