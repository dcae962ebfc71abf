"""A fake Keycloak (``FakeKeycloak``): a real HTTP server of per-realm keys, OIDC endpoints and an admin API.

It is composed of what it fakes, one module each:
- ``webhook/testing/keys.py``: the key pool, Keycloak's kids and JWKs, ``sign_raw``, ``DROP``;
- ``webhook/testing/realm.py``: a realm (``FakeRealm``), its keys and their states;
- ``webhook/testing/tokens.py``: Keycloak-shaped access and logout tokens (``mint``, ``logout_token``);
- ``webhook/testing/oidc.py``: the certs, discovery and token endpoints, their fault modes and records;
- ``webhook/testing/adminmodel.py``, ``adminhttp.py`` and ``adminapi.py``: the admin REST API;
- ``webhook/testing/mappers.py``: the claims a client's protocol mappers add;
- ``webhook/testing/attacker.py``: ``AttackerHost``, the host an attacker controls.

Rules of this module:
- This module is the fake's public face: it re-exports what a test of the fake Keycloak needs
  (``FakeKeycloak``, ``FakeRealm``, ``AttackerHost``, ``Behaviour``, ``SigningKey``, ``DROP``,
  ``HASURA_CLAIMS``, ``ROLES``, ``sign_raw``, ``attacker_key``, ``keycloak_kid``), so tests import them
  from here; anything else is imported from the module that owns it.
- Keys come from a process-wide pool: within one ``FakeKeycloak`` every key is distinct, while separate
  instances reuse the same keys, so a suite creating hundreds of realms generates each key once.
- A realm deleted with ``remove_realm`` answers 404 like a deleted Keycloak realm.
- The admin API (``configure_admin``; modelled in ``webhook/testing/adminmodel.py`` on what the real
  Keycloak did in tests): the client-credentials token endpoint of the admin realm and the realm,
  partial-import, client, mapper, role and secret endpoints behind its bearer tokens. A realm created
  there is in ``admin_realms`` and also served (with generated keys), so tokens can be minted
  for it; every admin call is recorded in ``admin_calls``; ``set_admin_behaviour("down")`` makes the
  admin API (token endpoint included) answer 503. A confidential service-account client created
  through the admin API (an API key) gets client-credentials tokens from its realm's token endpoint
  (``webhook/testing/oidc.py``, its mappers' claims from ``webhook/testing/mappers.py``).
- The controls (``set_behaviour``, ``add_realm``, ``wait_for_jwks_fetches``...) belong to the event loop
  serving the fake; call them from that loop's thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

from starlette.routing import Mount
from starlette.types import ASGIApp

from webhook.testing.adminapi import FakeAdminApi
from webhook.testing.adminmodel import AdminCall
from webhook.testing.attacker import AttackerHost
from webhook.testing.keys import DROP, AsymmetricKey, SigningKey, attacker_key, keycloak_kid, pooled_key, sign_raw
from webhook.testing.oidc import Behaviour, OidcEndpoints
from webhook.testing.realm import FakeRealm
from webhook.testing.server import serve_asgi, serve_asgi_in_thread
from webhook.testing.tokens import HASURA_CLAIMS, ROLES

__all__ = [
    "DROP",
    "HASURA_CLAIMS",
    "ROLES",
    "AttackerHost",
    "Behaviour",
    "FakeKeycloak",
    "FakeRealm",
    "SigningKey",
    "attacker_key",
    "keycloak_kid",
    "sign_raw",
]


class FakeKeycloak(OidcEndpoints):
    """Keycloak's realm key endpoints, served for real, plus a minter of Keycloak-shaped tokens.

    Use ``async with FakeKeycloak.start() as kc`` in tests; ``FakeKeycloak(issuer_base=...)`` alone mints
    tokens without serving, and ``kc.serve_in_thread()`` serves for synchronous callers.
    """

    def __init__(self, *, issuer_base: str | None = None) -> None:
        OidcEndpoints.__init__(self)
        self._issuer_base = issuer_base.rstrip("/") if issuer_base is not None else None
        self._realms: dict[str, FakeRealm] = {}
        self._slots: Counter[str] = Counter()
        self._minted = 0
        #: The admin API (webhook/testing/adminapi.py): realms, clients, mappers, roles, its token.
        self.admin_api = FakeAdminApi(on_created=self._admin_created, on_deleted=self._admin_deleted)
        self.app: ASGIApp = self._endpoints_app(Mount("/admin", app=self.admin_api.app))

    # ---- serving

    @classmethod
    @asynccontextmanager
    async def start(
        cls, issuer_base: str | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> AsyncIterator[FakeKeycloak]:
        """Serve a new fake in the running loop; ``issuer_base`` defaults to its own URL."""
        keycloak = cls(issuer_base=issuer_base)
        keycloak._reset_loop_state()
        async with serve_asgi(keycloak.app, host=host, port=port, lifespan="off") as running:
            keycloak._url = running.url
            try:
                yield keycloak
            finally:
                keycloak.release_slow()
                keycloak.admin_api.release()

    @contextmanager
    def serve_in_thread(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[FakeKeycloak]:
        """Serve this fake from a background thread (dev mode, benchmarks); "slow" mode is unusable there."""
        self._reset_loop_state()
        with serve_asgi_in_thread(self.app, host=host, port=port, lifespan="off") as running:
            self._url = running.url
            try:
                yield self
            finally:
                self._url = None

    def _reset_loop_state(self) -> None:
        self._reset_endpoints_loop_state()
        self.admin_api.reset_loop_state()

    @property
    def issuer_base(self) -> str:
        """Public base URL put in ``iss`` (defaults to ``url``)."""
        if self._issuer_base is not None:
            return self._issuer_base
        return self.url

    # ---- realms

    def add_realm(
        self,
        name: str,
        *,
        algorithms: Sequence[str] = ("RS256",),
        with_enc_key: bool = True,
        signing_key_pem: bytes | None = None,
    ) -> FakeRealm:
        """Create a realm with one signing key per algorithm (the first is active) and an enc key."""
        if name in self._realms:
            raise ValueError(f"realm {name!r} already exists")
        if not algorithms:
            raise ValueError("a realm needs at least one signing algorithm")
        realm = FakeRealm(self, name)
        for index, algorithm in enumerate(algorithms):
            realm._add_signing_key(algorithm, signing_key_pem if index == 0 else None)
        realm._active = realm._signing[0]
        if with_enc_key:
            realm._add_enc_key()
        self._realms[name] = realm
        return realm

    def realm(self, name: str) -> FakeRealm:
        return self._realms[name]

    @property
    def realms(self) -> Mapping[str, FakeRealm]:
        return dict(self._realms)

    def remove_realm(self, name: str) -> None:
        """Delete a realm: its endpoints answer "Realm does not exist" from now on."""
        del self._realms[name]

    def _allocate_key(self, family: str) -> AsymmetricKey:
        slot = self._slots[family]
        self._slots[family] += 1
        return pooled_key(family, slot)

    # ---- tokens (``mint``, ``logout_token``): TokenMinter, webhook/testing/tokens.py
    # ---- behaviour, counters, endpoints (``set_behaviour``...): OidcEndpoints, webhook/testing/oidc.py

    # ---- admin API (webhook/testing/adminapi.py)

    def configure_admin(
        self,
        client_id: str,
        client_secret: str,
        *,
        realm: str = "master",
        token_lifetime: int = 60,
        lightweight: bool = False,
        admin: bool = False,
        create_realm: bool = True,
    ) -> None:
        """Accept the client-credentials grant of (``client_id``, ``client_secret``) in ``realm`` for the admin API.

        ``lightweight``: its token stays small (else it grows per realm it created); ``admin``: it may
        manage every realm (else only those it created); ``create_realm``: it may create realms.
        """
        self.admin_api.configure(
            client_id,
            client_secret,
            realm=realm,
            token_lifetime=token_lifetime,
            lightweight=lightweight,
            admin=admin,
            create_realm=create_realm,
        )

    @property
    def admin_realms(self) -> dict[str, dict[str, Any]]:
        """Realms the admin API holds: name -> everything held (top level, clients, roles, groups)."""
        return {name: self.admin_api.export(name) for name in self.admin_api.realms}

    @property
    def admin_calls(self) -> list[AdminCall]:
        """Every call of the admin API (token endpoint of the admin realm included), in arrival order."""
        return self.admin_api.calls

    @property
    def admin_token_lifetime(self) -> int:
        """Seconds an admin token lives."""
        return self.admin_api.token_lifetime

    def set_admin_behaviour(self, mode: Literal["ok", "down", "slow"]) -> None:
        """ "down": the admin API and its token endpoint answer 503; "slow": they wait for ``release_admin()``."""
        self.admin_api.set_mode(mode)

    def release_admin(self) -> None:
        """Let the admin calls held by "slow" proceed."""
        self.admin_api.release()

    def revoke_admin_tokens(self) -> None:
        """Invalidate every admin access token issued so far (the next admin call with one gets 401)."""
        self.admin_api.revoke_tokens()

    def admin_calls_for(self, realm: str, method: str | None = None) -> list[AdminCall]:
        """The admin calls about ``realm`` (optionally of one method)."""
        return [c for c in self.admin_calls if c.realm == realm and (method is None or c.method == method)]

    def realm_creations(self, realm: str) -> list[AdminCall]:
        """The ``POST /admin/realms`` calls that named ``realm`` (whatever their answer)."""
        return [c for c in self.admin_calls if c.realm == realm and c.method == "POST" and c.path == "/admin/realms"]

    def _admin_created(self, name: str) -> None:
        if name not in self._realms:
            self.add_realm(name)

    def _admin_deleted(self, name: str) -> None:
        self._realms.pop(name, None)
