"""The body Hasura POSTs to an action handler, parsed and checked. Pure.

`{"action": {"name": ...}, "input": {<argument>: ...}, "session_variables": {...}, "request_query": ...}`
(shared/design/hasura.md 2.1). Session variable names are lowercase per Hasura's docs; they are
lower-cased here anyway. Anything else is `validation-failed`, and so is JSON that
`webhook/actions/jsonlimits.py` refuses (too deep or large, U+0000, numbers not kept exactly).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.actions.errors import ActionError, Code
from webhook.actions.jsonlimits import JsonProblem, loads

MAX_SESSION_VALUE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class ActionCall:
    """One action call: its name, GraphQL arguments and Hasura session (not trusted on its own)."""

    name: str
    input: Mapping[str, Any]
    session_variables: Mapping[str, str]
    request_query: str | None = None

    def argument(self, name: str) -> Mapping[str, Any]:
        """The input object passed as GraphQL argument `name`; `validation-failed` if it is not one."""
        value = self.input.get(name)
        if type(value) is not dict:
            raise ActionError(Code.VALIDATION_FAILED, f"input.{name} must be an object", fields={name: "not an object"})
        return value


def _bad(message: str) -> ActionError:
    return ActionError(Code.VALIDATION_FAILED, message)


def parse_envelope(body: bytes) -> ActionCall:
    """The call in Hasura's action request body; `ActionError(validation-failed)` if it is not that shape."""
    try:
        data = loads(body)
    except JsonProblem as exc:
        fields = {exc.path: exc.problem} if exc.path else {}
        raise ActionError(
            Code.VALIDATION_FAILED, f"invalid input: {exc}", **({"fields": fields} if fields else {})
        ) from None
    if type(data) is not dict:
        raise _bad("the request body is not a JSON object")
    action = data.get("action")
    if type(action) is not dict or type(action.get("name")) is not str or not action["name"]:
        raise _bad('the request has no "action.name"')
    arguments = data.get("input")
    if type(arguments) is not dict:
        raise _bad('the request has no "input" object')
    raw_session = data.get("session_variables")
    if type(raw_session) is not dict:
        raise _bad('the request has no "session_variables" object')
    session: dict[str, str] = {}
    for name, value in raw_session.items():
        if type(value) is not str or len(value) > MAX_SESSION_VALUE_CHARS:
            raise _bad("session variables must be strings")
        session[name.lower()] = value
    query = data.get("request_query")
    if query is not None and type(query) is not str:
        raise _bad('"request_query" must be a string or null')
    return ActionCall(action["name"], arguments, session, query)


__all__ = ["ActionCall", "parse_envelope"]
