"""Text copied from a token or a request into a database row, a log line or a label: made safe. Pure.

Rules of this module:
- One place decides what an outsider's string may contain once it leaves the request: no U+0000
  (PostgreSQL refuses it in text), no lone surrogates (not encodable as UTF-8: asyncpg, orjson and
  the log stream refuse them), at most `limit` characters. Each refused character becomes U+FFFD,
  so a sanitised value still shows that something was there.
- Sanitising is idempotent and never raises on any `str`.
"""

from __future__ import annotations

import re
from typing import Final

REPLACEMENT: Final = "\ufffd"
_UNSAFE: Final = re.compile("[\x00\ud800-\udfff]")


def safe_text(value: str, limit: int) -> str:
    """`value` capped at `limit` characters, NUL and lone surrogates replaced by U+FFFD."""
    capped = value[:limit]
    if capped.isascii():  # the common case: only NUL can be wrong
        return capped.replace("\x00", REPLACEMENT) if "\x00" in capped else capped
    return _UNSAFE.sub(REPLACEMENT, capped)


def safe_optional(value: str | None, limit: int) -> str | None:
    """`safe_text` for an optional value (None stays None)."""
    return None if value is None else safe_text(value, limit)


__all__ = ["REPLACEMENT", "safe_optional", "safe_text"]
