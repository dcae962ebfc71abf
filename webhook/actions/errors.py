"""Action errors: a closed set of stable codes, answered in Hasura's 4xx error shape.

Rules of this module:
- Every refusal of an action is an `ActionError(code, message)`. The body is
  `{"message": ..., "extensions": {"code": ...}}` (Hasura passes a 4xx body's `message` and
  `extensions` to the client as they are); 5xx bodies never reach clients, so every expected
  refusal, `unavailable` included, is a 4xx.
- Messages are written for the API client and built only from our own text, field names and
  reason codes: never an exception's text, SQL, a stack trace, a token or a secret.

Exception tree::

    ActionError       the action is refused; carries a Code (HTTP status derived from it)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import orjson


class Code(StrEnum):
    """Stable error codes (API: clients branch on them)."""

    UNAUTHORIZED = "unauthorized"
    """401: not called by our Hasura (shared secret), or the caller's token was rejected."""
    FORBIDDEN = "forbidden"
    """403: the token lacks the permission, or the session disagrees with the token."""
    TENANT_MISMATCH = "tenant-mismatch"
    """403: the input's (or the session's) tenant is not the token's tenant."""
    VALIDATION_FAILED = "validation-failed"
    """400: the request or its input is malformed (`extensions.fields` says which field and why)."""
    NOT_FOUND = "not-found"
    """404: unknown action, or a referenced tenant that is not registered."""
    CONFLICT = "conflict"
    """409: the id (or slug) already exists with other content."""
    UNAVAILABLE = "unavailable"
    """424: the database is not reachable or not migrated yet; retrying later is safe (idempotent)."""
    INTERNAL = "internal"
    """500: a bug; details only in the service's log (Hasura shows clients `unexpected`)."""


STATUS: Final[Mapping[Code, int]] = {
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.TENANT_MISMATCH: 403,
    Code.VALIDATION_FAILED: 400,
    Code.NOT_FOUND: 404,
    Code.CONFLICT: 409,
    Code.UNAVAILABLE: 424,
    Code.INTERNAL: 500,
}


class ActionError(Exception):
    """An action refused with a stable code and a client-facing message."""

    __slots__ = ("code", "extra", "message")

    def __init__(self, code: Code, message: str, **extra: Any) -> None:
        super().__init__(code.value, message)
        self.code = code
        self.message = message
        self.extra = extra

    @property
    def status(self) -> int:
        """The HTTP status of the answer."""
        return STATUS[self.code]

    def body(self) -> bytes:
        """Hasura's action error shape."""
        extensions: dict[str, Any] = {"code": self.code.value, **self.extra}
        return orjson.dumps({"message": self.message, "extensions": extensions})

    def __repr__(self) -> str:
        return f"ActionError({self.code.value!r}, {self.message!r})"


__all__ = ["STATUS", "ActionError", "Code"]
