"""Structured logging: one JSON object per line on stdout (structlog, orjson).

Rules of this module:
- One canonical line per auth decision (`auth.decision`); other events are rare.
- Never a token, a token prefix or an Authorization header in any field.
- `LOG_FORMAT=console` renders `key=value` pairs: every value goes through `console_value`, so a
  value from outside (a claimed `sub`, a forwarded header) can hold no line break, no `key=value`
  that reads as another field, no ANSI escape and no bidi control: anything but a plain word is
  quoted, with control characters escaped as `\\u` and four hex digits.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import orjson
import structlog

#: A console value shown as it is: a plain word (no space, quote, `=`, backslash or control).
_PLAIN: Final = re.compile(r"[A-Za-z0-9_.,:;/@+\-\[\]()#%~*<>!?^|]+")
#: Escaped inside quotes: C0/C1 controls, DEL, line/paragraph separators, bidi and other format controls.
_UNSAFE: Final = re.compile(r'[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\\"]')
_NOT_ESCAPED: Final = ("timestamp", "level", "event", "exception")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in ('"', "\\") else f"\\u{ord(char):04x}"


def console_value(value: object) -> str:
    """`value` safe for one `key=value` console field (see the module rules)."""
    text = value if type(value) is str else str(value)
    if _PLAIN.fullmatch(text):
        return text
    return '"' + _UNSAFE.sub(_escape, text) + '"'


def terminal_text(value: object) -> str:
    """`value` safe to print on one terminal line: control, format and bidi characters (and `\\`, `"`)
    escaped, nothing quoted (for the CLI's reports of claimed values)."""
    return _UNSAFE.sub(_escape, value if type(value) is str else str(value))


class _Shown(str):
    """An already escaped console value: structlog's console renderer must show it as it is."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


def _escape_values(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if key not in _NOT_ESCAPED and value is not None:
            event[key] = _Shown(console_value(value))
    return event


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog for the process (idempotent)."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory: Any = structlog.BytesLoggerFactory(sys.stdout.buffer)
    else:
        processors.append(_escape_values)
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
        factory = structlog.PrintLoggerFactory(sys.stdout)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    """A bound logger tagged with the component name."""
    return structlog.get_logger(component=name)
