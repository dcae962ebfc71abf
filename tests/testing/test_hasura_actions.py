"""The Hasura stand-in calling an action handler: envelope, forwarded headers, and judging the answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from webhook.testing.hasura import HasuraStandIn, action_headers, classify_action_response
from webhook.testing.server import serve_asgi

pytestmark = pytest.mark.anyio


class EchoAction:
    """An action handler recording what it received and answering a preset response."""

    def __init__(self) -> None:
        self.received: list[tuple[list[tuple[str, str]], dict[str, Any], str]] = []
        self.status = 200
        self.body = b'{"id": "1"}'

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.received.append((headers, orjson.loads(body), str(scope["path"])))
        await send(
            {"type": "http.response.start", "status": self.status, "headers": [(b"content-type", b"application/json")]}
        )
        await send({"type": "http.response.body", "body": self.body})


@pytest.fixture
async def action(http: httpx.AsyncClient) -> AsyncIterator[tuple[EchoAction, HasuraStandIn]]:
    echo = EchoAction()
    async with serve_asgi(echo, lifespan="off") as running:
        yield echo, HasuraStandIn(f"{running.url}/hasura/auth", mode="GET", client=http)


async def test_envelope_and_headers(action: tuple[EchoAction, HasuraStandIn]) -> None:
    """Hasura's body and headers: configured secret, its defaults, forwarded client headers minus the filtered ones."""
    echo, hasura = action
    client = {
        "Authorization": "Bearer t",
        "X-Hasura-Role": "admin-user",
        "Host": "hasura:8080",
        "User-Agent": "curl/8",
        "Origin": "https://admin.example",
        "Accept": "*/*",
        "Cookie": "a=b",
        "X-Request-Id": "r-1",
    }
    verdict = await hasura.call_action(
        "insertElectionEvent",
        {"object": {"name": "n"}},
        {"X-Hasura-Role": "admin-user"},
        client,
        secret="s",
        request_query="q",
    )
    assert verdict.outcome == "data" and verdict.data == {"id": "1"}
    headers, body, path = echo.received[0]
    assert path == "/actions/insertElectionEvent"
    assert body == {
        "action": {"name": "insertElectionEvent"},
        "input": {"object": {"name": "n"}},
        "session_variables": {"x-hasura-role": "admin-user"},
        "request_query": "q",
    }
    names = {name.lower(): value for name, value in headers}
    assert names["x-actions-secret"] == "s"
    assert names["user-agent"] == "hasura-graphql-engine/v2.44.0"
    assert names["content-type"] == "application/json"
    assert (names["x-forwarded-host"], names["x-forwarded-user-agent"], names["x-forwarded-origin"]) == (
        "hasura:8080",
        "curl/8",
        "https://admin.example",
    )
    assert (names["authorization"], names["cookie"], names["x-request-id"]) == ("Bearer t", "a=b", "r-1")
    assert not {"x-hasura-role", "origin", "accept"} & set(names)


def test_client_header_overrides_configured_one() -> None:
    """Map.fromList keeps the last duplicate: a client header named like the secret header wins."""
    headers = dict(action_headers([("X-Actions-Secret", "real")], [], {"x-actions-secret": "forged"}))
    assert headers == {"x-actions-secret": "forged"}


@pytest.mark.parametrize(
    ("status", "body", "outcome", "code", "message"),
    [
        (200, b'{"id": "1", "extra": 2}', "data", None, None),
        (200, b"null", "data", None, None),
        (200, b'{"realm": "r"}', "unexpected", "unexpected", 'expecting not null value for field "id"'),
        (200, b"not json", "unexpected", "unexpected", "not a valid json response from webhook"),
        (
            400,
            b'{"message": "bad", "extensions": {"code": "validation-failed", "fields": {}}}',
            "error",
            "validation-failed",
            "bad",
        ),
        (409, b'{"message": "dup", "code": "conflict"}', "error", "conflict", "dup"),
        (403, b'{"message": "no"}', "error", "unexpected", "no"),
        (401, b"plain text", "unexpected", "unexpected", "internal error"),
        (500, b'{"message": "boom", "extensions": {"code": "x"}}', "unexpected", "unexpected", "internal error"),
    ],
)
def test_answers_judged_as_hasura(
    status: int, body: bytes, outcome: str, code: str | None, message: str | None
) -> None:
    """2xx needs JSON with the non-null fields; 4xx needs a message; anything else is unexpected."""
    verdict = classify_action_response(status, body, required=("id",))
    assert (verdict.outcome, verdict.code, verdict.message) == (outcome, code, message)


async def test_transport_failure_is_unexpected(http: httpx.AsyncClient) -> None:
    """No answer at all: Hasura's "http exception when calling webhook"."""
    hasura = HasuraStandIn("http://127.0.0.1:1/hasura/auth", mode="GET", client=http)
    verdict = await hasura.call_action("a", {}, {}, {}, secret=None)
    assert (verdict.status, verdict.outcome, verdict.message) == (
        0,
        "unexpected",
        "http exception when calling webhook",
    )
