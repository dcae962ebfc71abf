"""Serve an ASGI app with a real uvicorn server on a loopback socket, in the caller's loop or a thread.

Rules of this module:
- The listening socket is bound and listening before uvicorn runs, so the port is known at once and early
  connections wait in the backlog; nothing sleeps or polls to wait for readiness.
- ``serve_asgi`` yields only once the app's lifespan startup has completed. A startup failure raises the
  app's own exception (or ``ServerStartupError``) in the caller instead of hanging or exiting the process.
- Uvicorn never installs signal handlers here: the process belongs to the caller (pytest, the CLI).
- Shutdown is bounded by ``shutdown_timeout``: in-flight requests get that long to finish, then they are
  cancelled and their connections aborted. A crash of the server task surfaces when the context exits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RunningServer", "ServerStartupError", "serve_asgi", "serve_asgi_in_thread"]

logger = logging.getLogger(__name__)

LifespanMode = Literal["on", "off", "auto"]

_BACKLOG = 2048
_TICK_SECONDS = 1.0  # uvicorn refreshes its Date header once a second
_DRAIN_POLL_SECONDS = 0.001


class ServerStartupError(RuntimeError):
    """Uvicorn gave up during startup without an exception from the app to show for it."""


@dataclass(frozen=True, slots=True)
class RunningServer:
    """Where a served app listens."""

    host: str
    port: int
    url: str


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _LifespanErrorTrap:
    """ASGI wrapper keeping the exception the app raised in its lifespan scope (uvicorn only logs it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.error = exc
            raise


class _TaskServer(uvicorn.Server):
    """A uvicorn server meant to run as a task of someone else's event loop."""

    def __init__(self, config: uvicorn.Config, trap: _LifespanErrorTrap, shutdown_timeout: float) -> None:
        super().__init__(config)
        self._trap = trap
        self._shutdown_timeout = shutdown_timeout
        self._exit_requested = asyncio.Event()
        self.ready = asyncio.Event()

    def request_exit(self) -> None:
        """Ask the server to stop; must be called from the loop the server runs in."""
        self.should_exit = True
        self._exit_requested.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signals belong to the host process: uvicorn must neither capture nor re-raise them.
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets=sockets)
        except SystemExit as exc:  # uvicorn calls sys.exit() when startup fails
            code = exc.code
        else:
            return
        error = self._trap.error
        if isinstance(error, Exception):
            raise error
        raise ServerStartupError(f"uvicorn gave up during startup (exit code {code!r})")

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        # With lifespan="auto" an app without lifespan support raises there harmlessly: forget it.
        self._trap.error = None
        self.ready.set()

    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 0.1 s; wait on an event instead and tick once a second.
        while not await self.on_tick(0):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK_SECONDS):
                    await self._exit_requested.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's own shutdown sleeps a fixed 0.1 s and may wait forever on a stuck request.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                while (state.connections or state.tasks) and not self.force_exit:
                    if state.tasks:
                        await asyncio.wait(list(state.tasks))
                    else:  # closed transports report connection_lost within a loop iteration or two
                        await asyncio.sleep(_DRAIN_POLL_SECONDS)
        except TimeoutError:
            logger.warning("cancelling %d request(s) still running at shutdown", len(state.tasks))
        if state.tasks:  # cancelled requests still answer 500 where they can
            for task in list(state.tasks):
                task.cancel()
            await asyncio.wait(list(state.tasks), timeout=self._shutdown_timeout)
        if state.connections:  # let closing transports flush what the cancelled requests wrote
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
        for connection in list(state.connections):
            transport: asyncio.Transport | None = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()
            error = self._trap.error
            if isinstance(error, Exception):
                raise error


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets that say so, and without
    # it every keep-alive response waits ~40 ms (Nagle against delayed ACK).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _stop(server: _TaskServer, task: asyncio.Task[None], shutdown_timeout: float) -> None:
    """Stop the server task within bounds, then re-raise whatever it died of."""
    if not task.done():
        server.request_exit()
        try:
            done, _ = await asyncio.wait({task}, timeout=shutdown_timeout * 2 + 1.0)
            if not done:
                logger.error("uvicorn did not stop within %.1f s: forcing it", shutdown_timeout * 2 + 1.0)
                server.force_exit = True
                task.cancel()
                await asyncio.wait({task}, timeout=shutdown_timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
    if task.done() and not task.cancelled():
        task.result()


@asynccontextmanager
async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: LifespanMode = "auto",
    shutdown_timeout: float = 5.0,
    config: Mapping[str, Any] | None = None,
) -> AsyncIterator[RunningServer]:
    """Serve ``app`` with uvicorn in the running event loop until the context exits.

    ``config`` holds extra ``uvicorn.Config`` keyword arguments (e.g. ``{"proxy_headers": True}``); by
    default proxy headers are ignored, websockets are off and access logs are silent.
    """
    sock = _listening_socket(host, port)
    try:
        bound_port: int = sock.getsockname()[1]
        trap = _LifespanErrorTrap(app)
        options: dict[str, Any] = {
            "host": host,
            "port": bound_port,
            "lifespan": lifespan,
            "log_config": None,  # leave the host process's logging configuration alone
            "log_level": "warning",
            "access_log": False,
            "http": "auto",  # httptools when installed, else h11
            "ws": "none",
            "proxy_headers": False,
        }
        options.update(config or {})
        server = _TaskServer(uvicorn.Config(trap, **options), trap, shutdown_timeout)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"uvicorn {_url(host, bound_port)}")
        try:
            ready = asyncio.create_task(server.ready.wait())
            try:
                await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                ready.cancel()
                await asyncio.wait({ready})
            if task.done():
                task.result()  # raises the startup failure
                raise ServerStartupError("uvicorn stopped before it was ready")
            yield RunningServer(host=host, port=bound_port, url=_url(host, bound_port))
        finally:
            await _stop(server, task, shutdown_timeout)
    finally:
        sock.close()


@contextmanager
def serve_asgi_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    lifespan: LifespanMode = "auto",
    shutdown_timeout: float = 5.0,
    config: Mapping[str, Any] | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> Iterator[RunningServer]:
    """Serve ``app`` from a background thread with its own event loop, for synchronous callers.

    The app then runs in that thread's loop: anything it shares with the caller must be thread-safe.
    Startup failures are raised here; failures at shutdown are raised when the context exits.
    """
    started: concurrent.futures.Future[tuple[RunningServer, asyncio.AbstractEventLoop, asyncio.Event]]
    started = concurrent.futures.Future()
    failures: list[BaseException] = []

    async def main() -> None:
        stop = asyncio.Event()
        async with serve_asgi(
            app, host=host, port=port, lifespan=lifespan, shutdown_timeout=shutdown_timeout, config=config
        ) as running:
            started.set_result((running, asyncio.get_running_loop(), stop))
            await stop.wait()

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(main())
        except BaseException as exc:  # handed to the caller's thread, never lost
            if started.done():
                failures.append(exc)
            else:
                started.set_exception(exc)

    thread = threading.Thread(target=run, name=f"serve_asgi {host}:{port}", daemon=True)
    thread.start()
    try:
        running, loop, stop = started.result()
    except BaseException:
        thread.join()
        raise
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(shutdown_timeout * 2 + 2.0)
        if thread.is_alive():
            logger.error("server thread for %s did not stop", running.url)
        if failures:
            raise failures[0]
