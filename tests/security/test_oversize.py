"""MB-sized tokens, bodies and request heads: answered fast, with bounded memory, the server responsive.

Below the HTTP head cap (256 KiB, `webhook/auth/httpbounds.py`) an oversize token reaches the hook and is
a 401 `malformed_token` with an audit row like any other; above it the server answers 431 from the
protocol layer and closes, before any header is parsed (the app never sees it, so nothing is audited).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from click.testing import CliRunner

from tests.security.support import AdversarialStack, bearer
from webhook.auth.httpbounds import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from webhook.testing.keycloak import attacker_key

pytestmark = pytest.mark.anyio
CHUNK = b"a" * 65536


async def _send_head(url: str, size: int) -> tuple[bytes, float]:
    """Stream a GET whose Authorization header is `size` bytes; (what came back, seconds taken)."""
    parts = urlsplit(url)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    answer = b""
    try:
        writer.write(b"GET /hasura/auth HTTP/1.1\r\nHost: hook\r\nAuthorization: Bearer ")
        sent = 0
        while sent < size:
            writer.write(CHUNK)
            sent += len(CHUNK)
            await writer.drain()
            if reader.at_eof() or writer.is_closing():
                break
        writer.write(b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), timeout=5)
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()
    return answer, time.perf_counter() - started


@pytest.mark.parametrize("megabytes", [4, 32])
async def test_mb_sized_header_is_cut_off_fast_with_bounded_memory(sec: AdversarialStack, megabytes: int) -> None:
    """A multi-MB Authorization header: 431 (or the connection closed), the server allocates a bounded
    amount, and a concurrent honest request is answered meanwhile (no wall-clock bound: how fast is
    for bench/, what is bounded is memory and that the loop keeps serving).

    Before the head cap, uvicorn's httptools protocol parsed a 64 MB header for 12 s of event-loop
    time (every other request stalled) and held it whole in memory."""
    size = megabytes << 20
    honest = bearer(sec.keycloak.mint(sec.tenant.name))
    tracemalloc.start()
    try:
        attack = asyncio.create_task(_send_head(sec.url, size))
        verdict = await sec.hasura("GET").authenticate(honest)
        answer, seconds = await attack
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{megabytes} MB header: {seconds * 1000:.0f} ms, peak traced {peak / 1e6:.1f} MB, answer {answer[:40]!r}")
    assert verdict.outcome == "session"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert peak < 16 * MAX_HEAD_BYTES  # a few buffers of the head cap, not the header itself
    assert sec.attacker.hits == []
    await sec.expect_session(honest)  # still serving


async def test_head_just_under_the_cap_reaches_the_hook(sec: AdversarialStack) -> None:
    """A 200 KB token (under the 256 KiB head cap, over MAX_TOKEN_BYTES) is a normal 401 with an audit row."""
    token = "eyJ" + "A" * 200_000 + ".e30.c2ln"
    await sec.expect_rejected(bearer(token), "malformed_token", modes=("GET",))


async def test_mb_sized_token_in_post_body(sec: AdversarialStack) -> None:
    """POST mode carries the token in the body: a 700 KB token (under MAX_BODY_BYTES) is a 401
    `malformed_token`; a 4 MB `headers` member is a 400 (only `headers` is ever held)."""
    token = sec.keycloak.mint(sec.tenant.name, claims={"padding": "p" * 700_000})
    await sec.expect_rejected(bearer(token), "malformed_token", modes=("POST",))

    body = orjson.dumps({"headers": {"Authorization": "Bearer " + "a" * (4 << 20)}})
    response = await sec.client.post(f"{sec.url}/hasura/auth", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": '"headers" larger than MAX_BODY_BYTES'}


@pytest.mark.parametrize("form", ["object", "array"])
async def test_graphql_request_larger_than_max_body_bytes_is_answered(sec: AdversarialStack, form: str) -> None:
    """HASURA_GRAPHQL_AUTH_HOOK_SEND_REQUEST_BODY=true (Hasura's default) puts the whole GraphQL request
    in the POST body: a valid user's 3 MB mutation (MAX_BODY_BYTES is 1 MiB) opens a session, and a
    forged token beside it is a 401 with its audit row, never our 400 (Hasura's 500)."""
    big = {"query": "mutation($f: String!) { upload(file: $f) { id } }", "variables": {"f": "x" * (3 << 20)}}
    assert len(orjson.dumps(big)) > sec.settings.max_body_bytes
    honest = bearer(sec.keycloak.mint(sec.tenant.name))
    verdict = await sec.hasura("POST").authenticate(honest, big, request_form=form)  # type: ignore[arg-type]
    assert (verdict.hook_status, verdict.outcome) == (200, "session"), verdict.hook_body[:200]
    forged = bearer(sec.keycloak.mint(sec.tenant.name, signing_key=attacker_key()))
    request_id = f"big-{uuid.uuid4().hex}"
    verdict = await sec.hasura("POST").authenticate({**forged, "X-Request-Id": request_id}, big)
    assert (verdict.hook_status, orjson.loads(verdict.hook_body)["reason"]) == (401, "bad_signature")
    row = await sec.audit_row(request_id)
    assert row is not None and row["reason"] == "bad_signature"


async def test_non_ascii_bytes_in_get_mode(sec: AdversarialStack) -> None:
    """Raw latin-1/UTF-8 bytes in a GET-mode Authorization header: 401 `malformed_token`, audited."""
    token = sec.keycloak.mint(sec.tenant.name)
    for raw in ("Bearer \u00e9".encode() + token.encode(), b"Bearer " + token.encode() + b"\xa0", b"Bearer \xff\xfe"):
        request_id = uuid.uuid4().hex
        response = await sec.client.get(
            f"{sec.url}/hasura/auth", headers=[(b"authorization", raw), (b"x-request-id", request_id.encode())]
        )
        assert response.status_code == 401
        assert response.json()["reason"] == "malformed_token"
        row = await sec.audit_row(request_id)
        assert row is not None and row["reason"] == "malformed_token"


def test_serve_runs_the_bounded_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """`webhook serve` hands uvicorn the head-capped httptools protocol."""
    import uvicorn

    from webhook import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    result = CliRunner().invoke(cli.main, ["serve"], env={"KEYCLOAK_URL": "http://127.0.0.1:1"})
    assert result.exit_code == 0, result.output
    assert seen["http"] is BoundedHttpToolsProtocol


async def test_bounded_protocol_keeps_keepalive_and_pipelining() -> None:
    """The cap counts each request head anew: 50 requests on one keep-alive connection all pass."""
    from webhook.testing.server import serve_asgi

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with (
        serve_asgi(app, lifespan="off", config={"http": BoundedHttpToolsProtocol}) as running,
        httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client,
    ):
        header = {"X-Pad": "p" * (MAX_HEAD_BYTES // 8)}
        for _ in range(50):
            assert (await client.get(running.url, headers=header)).status_code == 200
