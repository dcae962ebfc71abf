"""The decision log: one JSON line per auth decision, cheap enough for every request.

Rules of this module:
- One line per decision (`"event": "auth.decision"`), same shape as the service's other
  structlog lines (`timestamp`, `level`, `component`, `event`), rendered with orjson directly:
  the hook runs on every GraphQL request, and a structlog pipeline plus one `write` syscall per
  line cost more than the verification of a cached token.
- Lines are buffered and written whole, when the buffer passes `max_buffer` bytes or at the
  latest every `interval` seconds (the lifespan runs the flusher and flushes at shutdown), so a
  crash loses at most that much; a line is never split.
- Callers never pass a token or an Authorization header: only claimed facts and the SHA-256.
- Console lines (`LOG_FORMAT=console`) quote and escape every value (`logs.console_value`), so a
  claimed field can never end the line or add a field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO, Final

import orjson

from webhook.observability.logs import console_value

_CONSTANT: Final = {"level": "info", "component": "webhook", "event": "auth.decision"}
# the constant members, between the timestamp and the fields (which follow the trailing comma)
_CONSTANT_JSON: Final = b'",' + orjson.dumps(_CONSTANT)[1:-1] + b","
_MAX_ALLOWED: Final = 8192  # (realm, sub, role, kind) members kept by write_allow; cleared when full


class DecisionLog:
    """Buffered writer of decision lines."""

    __slots__ = (
        "_allowed",
        "_buffer",
        "_clock",
        "_console",
        "_head",
        "_max",
        "_second",
        "_stamp",
        "_stream",
        "dropped",
        "enabled",
    )

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        enabled: bool = True,
        console: bool = False,
        max_buffer: int = 65536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer
        self._buffer = bytearray()
        self._max = max_buffer
        self._clock = clock
        self._console = console
        self._second = -1
        self._stamp = ""
        self._head = b""
        self._allowed: dict[tuple[str, str, str, str], bytes] = {}  # write_allow's rendered members
        self.enabled = enabled
        self.dropped = 0  # flushes lost because the stream failed

    def _fraction(self) -> bytes:
        """The timestamp's `.ffffffZ` (the second's part, `_stamp`/`_head`, is renewed when it changes)."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._head = f'{{"timestamp":"{self._stamp}'.encode()
        return b".%06dZ" % int((now - second) * 1e6)

    def write(self, fields: dict[str, Any]) -> None:
        """Queue one decision line (`fields` gains timestamp, level, component, event).

        JSON lines are spliced from bytes: the timestamp's second and the constant members are made
        once, and orjson renders only `fields` (building and rendering a merged dict per line was
        most of the line's cost). `fields` must not hold the constant members' names.
        """
        if not self.enabled:
            return
        fraction = self._fraction()
        if self._console:
            line: dict[str, Any] = {"timestamp": self._stamp + fraction.decode(), **_CONSTANT, **fields}
            rendered = " ".join(f"{k}={console_value(v)}" for k, v in line.items() if v is not None).encode(
                "utf-8", "replace"
            )
            self._buffer += rendered
            self._buffer += b"\n"
        else:
            body = orjson.dumps(fields)
            buffer = self._buffer
            buffer += self._head  # `{"timestamp":"` and the second
            buffer += fraction
            buffer += _CONSTANT_JSON if len(body) > 2 else _CONSTANT_JSON[:-1]
            buffer += body[1:]
            buffer += b"\n"
        if len(self._buffer) >= self._max:
            self.flush()

    def write_allow(self, realm: str, sub: str, role: str, kind: str, request_id: str | None) -> None:
        """`write` of an allowed decision's line (result, realm, sub, role, kind, request_id), with the
        members that repeat for a user and role rendered once (`_allowed`, bounded) instead of per line."""
        if not self.enabled:
            return
        if self._console:
            self.write(
                {"result": "allow", "realm": realm, "sub": sub, "role": role, "kind": kind, "request_id": request_id}
            )
            return
        key = (realm, sub, role, kind)
        members = self._allowed.get(key)
        if members is None:
            if len(self._allowed) >= _MAX_ALLOWED:
                self._allowed.clear()
            rendered = orjson.dumps({"result": "allow", "realm": realm, "sub": sub, "role": role, "kind": kind})
            members = self._allowed[key] = rendered[1:-1] + b',"request_id":'
        fraction = self._fraction()
        buffer = self._buffer
        buffer += self._head
        buffer += fraction
        buffer += _CONSTANT_JSON
        buffer += members
        buffer += b"null}\n" if request_id is None else orjson.dumps(request_id) + b"}\n"
        if len(buffer) >= self._max:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (whole lines)."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):  # stdout closed or broken: logging must never take the service down
                self.dropped += 1

    async def run_flusher(self, interval: float = 0.2) -> None:
        """Forever: flush every `interval` seconds."""
        while True:
            await asyncio.sleep(interval)
            self.flush()
