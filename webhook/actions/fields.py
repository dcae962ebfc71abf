"""Reading an action's input object field by field, with one clear message per bad field. Pure.

Rules of this module:
- GraphQL `null` and an absent field are the same: the field's default.
- Unknown fields are refused (Hasura only sends declared ones; anything else is a client calling us
  directly or metadata out of step with the code); fields declared but ignored on purpose (as the
  platform ignores `dates`, `created_at`, `updated_at`) are accepted whatever their value.
- Messages name the field and the JSON type received, never the value.
- Text fields refuse control characters but tab and line breaks; jsonb fields (`json_object`) are
  at most `MAX_JSONB_DEPTH` deep and `MAX_JSONB_BYTES` encoded (the body as a whole was already
  checked by `webhook/actions/jsonlimits.py`: no U+0000, numbers kept exactly).
- UUIDs are accepted in any letter case, in the 8-4-4-4-12 form only, and returned lowercase (the
  form realm names use).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from webhook.actions.errors import ActionError, Code
from webhook.actions.jsonlimits import measure

UUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: Bounds of one jsonb field (the whole body is bounded by MAX_BODY_BYTES and jsonlimits.MAX_DEPTH).
MAX_JSONB_DEPTH: Final = 16
MAX_JSONB_BYTES: Final = 65536
#: Control characters refused in text fields (tab, line feed and carriage return are kept).
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_JSON_TYPES: Final = {str: "string", bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


def json_type(value: object) -> str:
    """The JSON type name of a decoded value."""
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


class InputReader:
    """Typed access to one input object; problems are collected, then raised together by `check()`."""

    def __init__(self, data: Mapping[str, Any], *, known: Iterable[str], ignored: Iterable[str] = ()) -> None:
        self._data = data
        self.problems: dict[str, str] = {}
        allowed = set(known) | set(ignored)
        for name in data:
            if name not in allowed:
                self.problems[str(name)[:64]] = "unknown field"

    def _get(self, name: str, required: bool) -> Any:
        value = self._data.get(name)
        if value is None and required:
            self.problems[name] = "required"
        return value

    def _wrong(self, name: str, expected: str, value: object) -> None:
        self.problems[name] = f"expected {expected}, got {json_type(value)}"

    def uuid(self, name: str, *, required: bool = False) -> str | None:
        """A UUID string, lowercased."""
        value = self._get(name, required)
        if value is None:
            return None
        if type(value) is not str:
            self._wrong(name, "a UUID string", value)
            return None
        if not UUID_RE.fullmatch(value):
            self.problems[name] = "not a UUID"
            return None
        return value.lower()

    def text(
        self, name: str, *, required: bool = False, max_chars: int | None = None, non_empty: bool = False
    ) -> str | None:
        """A string; `non_empty` refuses blank ones, `max_chars` long ones."""
        value = self._get(name, required)
        if value is None:
            return None
        if type(value) is not str:
            self._wrong(name, "a string", value)
            return None
        if non_empty and not value.strip():
            self.problems[name] = "must not be empty"
            return None
        if max_chars is not None and len(value) > max_chars:
            self.problems[name] = f"longer than {max_chars} characters"
            return None
        if _CONTROL.search(value):
            self.problems[name] = "holds a control character (U+0000-U+001F but tab and line breaks, or U+007F)"
            return None
        return value

    def boolean(self, name: str) -> bool | None:
        """true or false."""
        value = self._get(name, False)
        if value is None or type(value) is bool:
            return value
        self._wrong(name, "a boolean", value)
        return None

    def json_object(self, name: str) -> dict[str, Any] | None:
        """A JSON object (a `jsonb` field the platform requires to be an object)."""
        value = self._get(name, False)
        if value is None:
            return None
        if type(value) is not dict:
            self._wrong(name, "an object", value)
            return None
        depth, size = measure(value)
        if depth > MAX_JSONB_DEPTH:
            self.problems[name] = f"nested deeper than {MAX_JSONB_DEPTH} levels"
            return None
        if size > MAX_JSONB_BYTES:
            self.problems[name] = f"larger than {MAX_JSONB_BYTES} bytes as JSON"
            return None
        return value

    def check(self) -> None:
        """Raise `validation-failed` listing every problem found so far, if any."""
        if self.problems:
            listed = "; ".join(f"{name}: {problem}" for name, problem in sorted(self.problems.items()))
            raise ActionError(Code.VALIDATION_FAILED, f"invalid input: {listed}", fields=dict(self.problems))


__all__ = ["UUID_RE", "InputReader", "json_type"]
