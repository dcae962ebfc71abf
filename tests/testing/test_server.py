"""Tests of serve_asgi: readiness without waiting, failures surfacing in the caller, bounded shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from webhook.testing.server import serve_asgi, serve_asgi_in_thread

pytestmark = pytest.mark.anyio


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


def app_with_lifespan(*, fail_at: str) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if fail_at == "startup":
            raise LookupError("startup went wrong")
        yield
        if fail_at == "shutdown":
            raise LookupError("shutdown went wrong")

    return Starlette(routes=[Route("/", hello)], lifespan=lifespan)


async def test_serves_on_a_loopback_port(http: httpx.AsyncClient) -> None:
    """The server answers as soon as the context is entered, on the URL it reports."""
    async with serve_asgi(APP) as running:
        assert running.url == f"http://127.0.0.1:{running.port}"
        assert running.port > 0
        assert (await http.get(running.url)).text == "hello"
    with pytest.raises(httpx.ConnectError):
        await http.get(running.url)


async def test_signal_handlers_are_left_alone() -> None:
    """Running uvicorn as a task installs no signal handler."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    async with serve_asgi(APP):
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


async def test_lifespan_startup_failure_raises_in_caller(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in lifespan startup propagates out of serve_asgi instead of hanging."""
    with anyio.fail_after(5), pytest.raises(LookupError, match="startup went wrong"):
        async with serve_asgi(app_with_lifespan(fail_at="startup")):
            pytest.fail("the body must not run")


async def test_lifespan_shutdown_failure_raises_at_exit(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in lifespan shutdown is raised when the context exits."""
    with anyio.fail_after(5), pytest.raises(LookupError, match="shutdown went wrong"):
        async with serve_asgi(app_with_lifespan(fail_at="shutdown"), lifespan="on"):
            pass


async def test_stuck_request_is_cancelled_within_the_shutdown_timeout(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A request that never finishes is cancelled (answered 500) once shutdown_timeout has passed."""
    arrived = asyncio.Event()

    async def stuck(request: Request) -> PlainTextResponse:
        arrived.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = Starlette(routes=[Route("/", stuck)])
    started = time.monotonic()
    async with serve_asgi(app, shutdown_timeout=0.2) as running:
        pending = asyncio.create_task(http.get(running.url))
        with anyio.fail_after(5):
            await arrived.wait()
    assert time.monotonic() - started < 3
    assert (await pending).status_code == 500


def test_thread_server_serves_sync_callers() -> None:
    """serve_asgi_in_thread serves from its own loop and raises startup failures in the caller."""
    with serve_asgi_in_thread(APP) as running:
        assert httpx.get(running.url).text == "hello"
    with pytest.raises(LookupError, match="startup went wrong"):  # noqa: SIM117 (the raise is the entry)
        with serve_asgi_in_thread(app_with_lifespan(fail_at="startup")):
            pytest.fail("the body must not run")
