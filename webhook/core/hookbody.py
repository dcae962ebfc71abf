"""The `headers` member of a POST-mode hook body of any size, read in chunks with bounded memory. Pure.

Hasura sends `{"headers": {...}, "request": <the GraphQL request>}` (with
HASURA_GRAPHQL_AUTH_HOOK_SEND_REQUEST_BODY=true, its default, `request` holds the whole query and its
variables: it can be far larger than MAX_BODY_BYTES for a valid user). Bodies up to MAX_BODY_BYTES
are parsed whole (`hookrequest.from_post`); a larger one is fed to `HeadersScanner`, which:

- checks the top level (one object, member names, `:`, `,`, nothing after the closing brace) and
  keeps only the raw text of the `headers` member's value, at most `limit` bytes;
- skips every other member's value by its structure alone (strings with their escapes, nested
  brackets, scalars) without decoding it: nothing of `request` is kept, whatever its size;
- finds member names however they are spelled (`"head\\u0065rs"` is `headers`, as for a JSON
  parser) and refuses a body with `headers` twice, or none.

Memory: the current chunk, at most `limit` bytes of `headers`, and a few counters. The `headers`
text is then parsed strictly (orjson) by the caller. Any structural error is `BadHookBody`.
"""

from __future__ import annotations

import re
from typing import Final

import orjson

from webhook.core.hookrequest import BadHookBody

_WS: Final = b" \t\r\n"
_IN_STRING: Final = re.compile(rb'["\\]')
_STRUCTURE: Final = re.compile(rb'[\[\]{}"]')
_SCALAR_END: Final = re.compile(rb"[ \t\r\n,}\]]")
_MAX_NAME_BYTES: Final = 64  # a member name longer than this (raw) is not `headers`

# top-level states
_START, _NAME_OR_END, _NAME, _IN_NAME, _COLON, _VALUE, _IN_VALUE, _COMMA_OR_END, _DONE = range(9)


class HeadersScanner:
    """Feed a hook body chunk by chunk, then `finish()` for the raw JSON text of its `headers` value."""

    __slots__ = (
        "_capture",
        "_capturing",
        "_depth",
        "_escape",
        "_headers",
        "_in_string",
        "_limit",
        "_name",
        "_name_escape",
        "_scalar",
        "_started",
        "_state",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._state = _START
        self._name = bytearray()
        self._name_escape = False
        self._capturing = False
        self._capture = bytearray()
        self._headers: bytes | None = None
        self._reset_value()

    def _reset_value(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._scalar = False
        self._started = False

    def feed(self, data: bytes) -> None:
        """Scan the next chunk; `BadHookBody` as soon as the body cannot be Hasura's shape."""
        i, n = 0, len(data)
        while i < n:
            state = self._state
            if state == _IN_NAME:
                i = self._scan_name(data, i)
                continue
            if state == _IN_VALUE:
                start = i
                i = self._scan_value(data, i)
                if self._capturing:
                    self._keep(data[start:i])
                if not self._in_value_pending():
                    self._end_value()
                continue
            byte = data[i]
            if byte in _WS:
                i += 1
                continue
            if state == _START:
                self._expect(byte == 0x7B, "body is not a JSON object")  # {
                self._state = _NAME_OR_END
            elif state in (_NAME_OR_END, _NAME):
                if byte == 0x7D and state == _NAME_OR_END:  # } of an empty object
                    self._state = _DONE
                else:
                    self._expect(byte == 0x22, "body is not JSON")  # "
                    self._name.clear()
                    self._state = _IN_NAME
            elif state == _COLON:
                self._expect(byte == 0x3A, "body is not JSON")  # :
                self._state = _VALUE
            elif state == _VALUE:
                self._reset_value()
                self._state = _IN_VALUE
                continue  # the value's first byte is scanned by _scan_value
            elif state == _COMMA_OR_END:
                if byte == 0x2C:  # ,
                    self._state = _NAME
                else:
                    self._expect(byte == 0x7D, "body is not JSON")  # }
                    self._state = _DONE
            else:  # _DONE
                raise BadHookBody("body is not JSON (data after the object)")
            i += 1

    def finish(self) -> bytes:
        """The raw JSON text of the `headers` value; `BadHookBody` if the body ended early or had none."""
        if self._state != _DONE:
            raise BadHookBody("body is not JSON (it ends early)")
        if self._headers is None:
            raise BadHookBody('body has no "headers" object')
        return self._headers

    # ---- member names

    def _scan_name(self, data: bytes, i: int) -> int:
        n = len(data)
        while i < n:
            if self._name_escape:
                self._name_escape = False
                self._name_byte(data[i : i + 1])
                i += 1
                continue
            match = _IN_STRING.search(data, i)
            end = n if match is None else match.start()
            self._name_byte(data[i:end])
            if match is None:
                return n
            i = match.end()
            if match.group() == b"\\":
                self._name_byte(b"\\")
                self._name_escape = True
            else:
                self._state = _COLON
                self._capturing = self._is_headers()
                return i
        return n

    def _name_byte(self, chunk: bytes) -> None:
        if len(self._name) <= _MAX_NAME_BYTES:
            self._name += chunk[: _MAX_NAME_BYTES + 1 - len(self._name)]

    def _is_headers(self) -> bool:
        if len(self._name) > _MAX_NAME_BYTES:
            return False
        raw = bytes(self._name)
        if raw == b"headers":
            name: object = "headers"
        elif b"\\" in raw:
            try:
                name = orjson.loads(b'"' + raw + b'"')
            except orjson.JSONDecodeError:
                raise BadHookBody("body is not JSON (bad member name)") from None
        else:
            return False
        if name != "headers":
            return False
        if self._headers is not None:
            raise BadHookBody('body has "headers" twice')
        return True

    # ---- values

    def _in_value_pending(self) -> bool:
        return self._state == _IN_VALUE

    def _scan_value(self, data: bytes, i: int) -> int:
        """Scan the current value from `i`; the index after it (it ended: state moves on) or len(data)."""
        n = len(data)
        while i < n:
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                match = _IN_STRING.search(data, i)
                if match is None:
                    return n
                i = match.end()
                if match.group() == b"\\":
                    self._escape = True
                    continue
                self._in_string = False
                if self._depth == 0:
                    return self._value_ended(i)
                continue
            if self._scalar:
                match = _SCALAR_END.search(data, i)
                if match is None:
                    return n
                return self._value_ended(match.start())
            if not self._started:
                self._started = True
                byte = data[i]
                if byte == 0x22:
                    self._in_string = True
                    i += 1
                elif byte in (0x7B, 0x5B):  # { [
                    self._depth = 1
                    i += 1
                else:
                    self._expect(byte not in b",:}]", "body is not JSON (a member has no value)")
                    self._scalar = True
                continue
            match = _STRUCTURE.search(data, i)
            if match is None:
                return n
            i = match.end()
            token = match.group()
            if token == b'"':
                self._in_string = True
            elif token in (b"{", b"["):
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    return self._value_ended(i)
        return n

    def _value_ended(self, i: int) -> int:
        self._state = _COMMA_OR_END
        return i

    def _keep(self, chunk: bytes) -> None:
        if len(self._capture) + len(chunk) > self._limit:
            raise BadHookBody('"headers" larger than MAX_BODY_BYTES')
        self._capture += chunk

    def _end_value(self) -> None:
        if self._capturing:
            self._headers = bytes(self._capture)
            self._capture = bytearray()
            self._capturing = False

    @staticmethod
    def _expect(condition: bool, problem: str) -> None:
        if not condition:
            raise BadHookBody(problem)


__all__ = ["HeadersScanner"]
