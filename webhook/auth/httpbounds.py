"""A bound on the size of HTTP request heads for the httptools protocol `webhook serve` runs.

Rules of this module:
- uvicorn's httptools protocol accepts request lines and headers of any size: a 64 MB
  `Authorization` header was parsed (and its bytes concatenated in the parser) for 12 s of
  event-loop time, stalling every other request, and held in memory whole before the hook could
  refuse it. h11 has a 16 KiB limit; httptools has none.
- `BoundedHttpToolsProtocol` counts the bytes received while a request head is incomplete; past
  `MAX_HEAD_BYTES` it answers `431` and closes the connection without parsing further. The bound
  is far above what Hasura forwards (its own HTTP server refuses client heads over 50 KiB) and
  above `MAX_TOKEN_BYTES`, so no request Hasura can send is affected.
- Bodies are not concerned: the hook reads at most `MAX_BODY_BYTES` of a POST body.
"""

from __future__ import annotations

from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES: Final = 256 * 1024
_BODY: Final = b'{"error":"request head too large"}'
_RESPONSE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request heads capped at `max_head_bytes` (431 above)."""

    max_head_bytes: int = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._in_head = False
                self.transport.write(_RESPONSE)
                self.transport.close()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True


__all__ = ["MAX_HEAD_BYTES", "BoundedHttpToolsProtocol"]
