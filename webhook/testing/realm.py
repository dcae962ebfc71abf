"""One realm of the fake Keycloak (``FakeRealm``): its keys, their states, its JWKS and discovery document.

Rules of this module:
- A realm publishes its signing keys (``"use": "sig"``) and, unless disabled, an RSA encryption key
  (``"use": "enc"``, ``"alg": "RSA-OAEP"``), in that order, as Keycloak's certs endpoint does.
- Keys have Keycloak's states: active (published, signs new tokens), passive (published, verifies only),
  disabled (not published); new tokens are signed by the newest active key.
- A realm named ``tenant-<uuid>`` (``-event-<uuid>``) carries that tenant (and event) id, which the
  minted tokens put in their Hasura claims.
- Every URL is built on its owner (the ``FakeKeycloak``): ``iss`` and the discovery document on the
  public issuer base, ``jwks_url`` on the internal URL; keys are allocated by the owner from the pool.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from joserfc.jwk import ECKey, KeySetSerialization, RSAKey

from webhook.testing.keys import AsymmetricKey, KeyState, RealmKey, key_family

__all__ = ["FakeRealm", "RealmOwner"]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_REALM_NAME = re.compile(rf"tenant-(?P<tenant>{_UUID})(?:-event-(?P<event>{_UUID}))?")


class RealmOwner(Protocol):
    """What a realm needs of the fake serving it (``FakeKeycloak``)."""

    @property
    def url(self) -> str: ...

    @property
    def issuer_base(self) -> str: ...

    def _allocate_key(self, family: str) -> AsymmetricKey: ...


class FakeRealm:
    """One realm of a ``FakeKeycloak``: its keys and the identity its name carries."""

    def __init__(self, owner: RealmOwner, name: str) -> None:
        self._owner = owner
        self.name = name
        match = _REALM_NAME.fullmatch(name)
        self.tenant_id: str | None = match["tenant"] if match else None
        self.event_id: str | None = match["event"] if match else None
        self._signing: list[RealmKey] = []
        self._active: RealmKey | None = None
        self._enc: RealmKey | None = None

    def __repr__(self) -> str:
        return f"FakeRealm({self.name!r}, signing_kids={self.signing_kids!r}, enc_kid={self.enc_kid!r})"

    @property
    def issuer(self) -> str:
        """The ``iss`` of this realm's tokens: the public issuer base + ``/realms/<name>``."""
        return f"{self._owner.issuer_base}/realms/{self.name}"

    @property
    def jwks_url(self) -> str:
        """Where the fake serves this realm's JWKS (its internal URL, not the public issuer)."""
        return f"{self._owner.url}/realms/{self.name}/protocol/openid-connect/certs"

    @property
    def signing_kids(self) -> tuple[str, ...]:
        """Kids of the published signing keys (active and passive), oldest first."""
        return tuple(entry.kid for entry in self._signing if entry.state != "disabled")

    @property
    def active_kid(self) -> str:
        """Kid of the key ``mint`` signs with by default."""
        return self._active_entry().kid

    @property
    def enc_kid(self) -> str | None:
        return self._enc.kid if self._enc is not None else None

    def jwks(self) -> KeySetSerialization:
        """The public JWKS served at the certs endpoint: signing keys, then the encryption key."""
        entries = [*self._signing, *([self._enc] if self._enc is not None else [])]
        return {"keys": [entry.public_jwk() for entry in entries if entry.state != "disabled"]}

    def openid_configuration(self) -> dict[str, Any]:
        """The discovery document; like Keycloak, every URL in it is built on the public issuer."""
        base = f"{self.issuer}/protocol/openid-connect"
        algs = sorted({entry.alg for entry in self._signing})
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/auth",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/token/introspect",
            "userinfo_endpoint": f"{base}/userinfo",
            "end_session_endpoint": f"{base}/logout",
            "jwks_uri": f"{base}/certs",
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "password",
                "client_credentials",
            ],
            "response_types_supported": [
                "code",
                "none",
                "id_token",
                "token",
                "id_token token",
                "code id_token",
            ],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": algs,
        }

    def rotate(self, *, keep_old: bool = True, algorithm: str = "RS256") -> str:
        """Publish a new signing key and make it the active one; return its kid."""
        if not keep_old:
            self._signing.clear()
        return self._add_signing_key(algorithm, None).kid

    def set_key_state(self, kid: str, state: KeyState) -> None:
        """Make a signing key active, passive (still published, signs nothing new) or disabled (unpublished).

        As in Keycloak, new tokens are signed by the newest active key; ``mint(kid=...)`` still signs with a
        passive or disabled key, to stand for tokens issued before the change.
        """
        entry = self._entry(kid)
        entry.state = state
        active = [candidate for candidate in self._signing if candidate.state == "active"]
        self._active = active[-1] if active else None

    def remove_key(self, kid: str) -> None:
        """Stop publishing ``kid`` (signing or encryption key); the newest remaining one becomes active."""
        if self._enc is not None and self._enc.kid == kid:
            self._enc = None
            return
        entry = self._entry(kid)
        self._signing.remove(entry)
        if self._active is entry:
            active = [candidate for candidate in self._signing if candidate.state == "active"]
            self._active = active[-1] if active else None

    def private_key(self, kid: str | None = None) -> AsymmetricKey:
        """The private key behind ``kid`` (default: the active signing key)."""
        return self._entry(kid).key

    def signing_key_pem(self, kid: str | None = None) -> bytes:
        """PKCS#8 PEM of a signing key (default: the active one), e.g. for the dev mode to persist it."""
        return self._entry(kid).key.as_pem(private=True)

    def public_key_pem(self, kid: str | None = None) -> bytes:
        """SubjectPublicKeyInfo PEM of a published key (default: the active signing key)."""
        return self._entry(kid).key.as_pem(private=False)

    # internals used by FakeKeycloak and the token minter

    def _active_entry(self) -> RealmKey:
        if self._active is None:
            raise LookupError(f"realm {self.name!r} publishes no signing key")
        return self._active

    def _entry(self, kid: str | None) -> RealmKey:
        if kid is None:
            return self._active_entry()
        for entry in (*self._signing, *([self._enc] if self._enc is not None else [])):
            if entry.kid == kid:
                return entry
        raise KeyError(f"realm {self.name!r} has no key {kid!r}")

    def _add_signing_key(self, algorithm: str, pem: bytes | None) -> RealmKey:
        family = key_family(algorithm)
        if pem is None:
            key = self._owner._allocate_key(family)
        elif family == "RSA":
            key = RSAKey.import_key(pem)
        else:
            key = ECKey.import_key(pem)
        entry = RealmKey(key=key, alg=algorithm, use="sig", realm=self.name)
        self._signing.append(entry)
        self._active = entry
        return entry

    def _add_enc_key(self) -> None:
        self._enc = RealmKey(key=self._owner._allocate_key("RSA"), alg="RSA-OAEP", use="enc", realm=self.name)
