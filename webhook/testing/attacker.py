"""A host an attacker controls (``AttackerHost``): it answers anything with a JWKS of a foreign key.

Rules of this module:
- Its key is ``attacker_key``: it belongs to no realm of any ``FakeKeycloak``.
- Every request it receives is recorded in ``hits`` (method, path, query, headers), whatever it asks for;
  point ``jku`` / ``x5u`` / ``iss`` of crafted tokens at it, then assert ``hits == []``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from joserfc.jwk import KeySetSerialization
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from webhook.testing.keys import AsymmetricKey, attacker_key, json_bytes
from webhook.testing.server import serve_asgi

__all__ = ["AttackerHost", "Hit"]


@dataclass(frozen=True, slots=True)
class Hit:
    """One request received by an ``AttackerHost``."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]


class AttackerHost:
    """A host an attacker controls: answers anything with a JWKS of ``key`` and records every hit.

    Point ``jku`` / ``x5u`` / ``iss`` of crafted tokens at it, then assert ``hits == []``.
    """

    def __init__(self, *, algorithm: str = "RS256") -> None:
        self.key: AsymmetricKey = attacker_key(algorithm)
        self.algorithm = algorithm
        self.kid: str = self.key.thumbprint()
        self.hits: list[Hit] = []
        self._url: str | None = None

    @classmethod
    @asynccontextmanager
    async def start(cls, *, algorithm: str = "RS256", host: str = "127.0.0.1") -> AsyncIterator[AttackerHost]:
        attacker = cls(algorithm=algorithm)
        async with serve_asgi(attacker, host=host, lifespan="off") as running:
            attacker._url = running.url
            yield attacker

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("this AttackerHost is not being served")
        return self._url

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    def jwks(self) -> KeySetSerialization:
        jwk = dict(self.key.as_dict(private=False))
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        return {"keys": [jwk]}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"])
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        self.hits.append(Hit(str(scope["method"]), str(scope["path"]), query, headers))
        await Response(json_bytes(self.jwks()), media_type="application/json")(scope, receive, send)
