"""Helpers for the audit tests: settings, engines, bad tokens, the app run in process."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from webhook.app import WebhookApp
from webhook.audit.store import TABLE
from webhook.db.engine import make_engine
from webhook.settings import Settings

UNTRUSTED_ISSUER = "https://attacker.example/realms/evil"


def settings_from(env: Mapping[str, str]) -> Settings:
    return Settings.from_environ({"LOG_FORMAT": "console", **env}, require_keycloak=False)


def engine_for(env: Mapping[str, str]) -> AsyncEngine:
    settings = settings_from(env)
    return make_engine(settings.database_url.get_secret_value(), schema=settings.database_schema)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_token(n: int, *, iss: str = UNTRUSTED_ISSUER, sub: str | None = None) -> str:
    """A structurally valid RS256 JWS with a random signature: `unknown_issuer` without any fetch.

    `n` goes into `jti` (distinct n, distinct token and hash); the signature is random each call.
    """
    header = {"alg": "RS256", "kid": "attacker-kid", "typ": "JWT"}
    payload = {
        "iss": iss,
        "sub": sub or f"user-{n % 37}",
        "azp": "voting-portal",
        "jti": f"jti-{n}-{uuid.UUID(int=n)}",
        "exp": 4102444800,
        "typ": "Bearer",
    }
    segments = (_b64(orjson.dumps(header)), _b64(orjson.dumps(payload)), _b64(secrets.token_bytes(256)))
    return ".".join(segments)


@contextlib.asynccontextmanager
async def forwarder(port: int, target: tuple[str, int]) -> AsyncIterator[None]:
    """A TCP forwarder on 127.0.0.1:`port` to `target`: the database "coming back" on that port."""
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        for task in (
            asyncio.create_task(pipe(reader, upstream_writer)),
            asyncio.create_task(pipe(upstream_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def running(app: WebhookApp) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan started, and an in-process HTTP client for it."""
    async with app.router.router.lifespan_context(app.router):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook.test") as client:
            yield client


async def table_totals(engine: AsyncEngine) -> tuple[int, int]:
    """(rows, sum of occurrences) in the audit table."""
    async with engine.connect() as connection:
        result = await connection.execute(
            select(func.count(), func.coalesce(func.sum(TABLE.c.occurrences), 0)).select_from(TABLE)
        )
        rows, total = result.one()
    return int(rows), int(total)


def sample(metrics: Any, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A sample's value from an app's metrics registry (0 when absent)."""
    return float(metrics.registry.get_sample_value(name, dict(labels or {})) or 0.0)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingLog:
    """A structlog-shaped logger that keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append((level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self._log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log("error", event, **fields)

    def events(self, level: str | None = None) -> list[str]:
        return [event for lvl, event, _ in self.lines if level is None or lvl == level]
