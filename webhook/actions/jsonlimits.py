"""JSON an action may be given: bounded, storable in every database, and decoded exactly. Pure.

Rules of this module:
- `loads` parses an action body with orjson, then refuses (as `JsonProblem`, which the envelope
  turns into `validation-failed`):
  - nesting deeper than `MAX_DEPTH` or more than `MAX_NODES` values in all (orjson itself stops
    at 1,024 levels; anything deeper than 254 could not even be encoded again);
  - U+0000 in any string or member name: PostgreSQL can store it neither in `text` nor in `jsonb`
    (it would fail the transaction, i.e. look like an outage); invalid UTF-8 and lone surrogates
    are refused by orjson already;
  - numbers that would not be kept exactly: integers outside the 64-bit range
    (-2**63 .. 2**64-1, what orjson and the platform's serde_json keep as integers) and decimals
    whose value a double does not round-trip. orjson silently turns the former into floats, so two
    different requests (`18446744073709551616` and `18446744073709551617`) would decode, store and
    hash the same; both forms are refused instead.
- `measure` gives the depth and encoded size of one value (the per-field jsonb bounds of
  `InputReader.json_object`).
- Problems name a path of member names (each cut to 64 characters), never a value.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import orjson

MAX_DEPTH: Final = 32
MAX_NODES: Final = 100_000
MIN_INT: Final = -(2**63)
MAX_INT: Final = 2**64 - 1
_MAX_INT_DIGITS: Final = 21  # a sign and 20 digits: longer integer literals are out of range anyway
_PATH_PARTS: Final = 3  # e.g. input.object.labels: the field, not what is inside it


class JsonProblem(ValueError):
    """The JSON is refused; `path` is where (member names), `problem` what is wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


def _path(parts: tuple[str, ...]) -> str:
    return ".".join(part[:64] for part in parts[:_PATH_PARTS])


def _check_number(text: str) -> None:
    """Raise unless the literal `text` decodes exactly (see the module rules)."""
    is_int = not any(c in text for c in ".eE")
    if is_int:
        if len(text) > _MAX_INT_DIGITS or not MIN_INT <= int(text) <= MAX_INT:
            raise JsonProblem("", "an integer outside the 64-bit range")
        return
    try:
        exact = Decimal(text)
        kept = Decimal(repr(float(text)))
    except (InvalidOperation, ValueError, OverflowError):  # pragma: no cover - orjson parsed it already
        raise JsonProblem("", "a number that cannot be represented") from None
    if exact != kept:
        raise JsonProblem("", "a number with more precision than a double keeps (send it as a string)")


def _int_hook(text: str) -> int:
    _check_number(text)
    return 0


def _float_hook(text: str) -> float:
    _check_number(text)
    return 0.0


def walk(value: Any, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> tuple[int, bool]:
    """(depth, whether a float occurs) of a decoded value; `JsonProblem` past the bounds or on NUL."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(value, 1, ())]
    nodes = 0
    deepest = 0
    floats = False
    while stack:
        item, depth, path = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise JsonProblem("", f"more than {max_nodes} JSON values")
        if depth > deepest:
            deepest = depth
            if depth > max_depth:
                raise JsonProblem(_path(path), f"nested deeper than {max_depth} levels")
        kind = type(item)
        if kind is str:
            if "\x00" in item:
                raise JsonProblem(_path(path), "a string holds U+0000 (NUL), which cannot be stored")
        elif kind is dict:
            for name, member in item.items():
                if "\x00" in name:
                    raise JsonProblem(_path(path), "a member name holds U+0000 (NUL), which cannot be stored")
                stack.append((member, depth + 1, (*path, name)))
        elif kind is list:
            stack.extend((member, depth + 1, path) for member in item)
        elif kind is float:
            floats = True
    return deepest, floats


def loads(body: bytes) -> Any:
    """The decoded body, checked as the module rules say; `JsonProblem` if refused."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise JsonProblem("", "the request body is not JSON (or not UTF-8, or nested too deeply)") from None
    _, floats = walk(data)
    if floats:  # orjson may have rounded an integer or a decimal: look at the literals themselves
        json.loads(body, parse_int=_int_hook, parse_float=_float_hook)
    return data


def measure(value: Any) -> tuple[int, int]:
    """(depth, encoded bytes) of a decoded value already accepted by `loads`."""
    depth, _ = walk(value)
    return depth, len(orjson.dumps(value))


__all__ = ["MAX_DEPTH", "MAX_INT", "MAX_NODES", "MIN_INT", "JsonProblem", "loads", "measure", "walk"]
