"""A fake Keycloak: a real HTTP server publishing per-realm JWKS and OpenID configuration, and a token minter.

Rules of this module:
- Paths, status codes, headers and JSON shapes are Keycloak's:
  ``/realms/{realm}/protocol/openid-connect/certs`` (``Cache-Control: no-cache``),
  ``/realms/{realm}/.well-known/openid-configuration`` and, for an unknown realm,
  404 ``{"error": "Realm does not exist"}``. Any other path is a 404.
- A realm publishes its signing keys (``"use": "sig"``) and, unless disabled, an RSA encryption key
  (``"use": "enc"``, ``"alg": "RSA-OAEP"``). A kid is derived as Keycloak's ``KeyUtils.createKeyId`` does:
  base64url of the SHA-256 of the public key's X.509 SubjectPublicKeyInfo (checked against Keycloak 26.7).
  Nothing may rely on it: the service treats kid and x5c as opaque.
- Keys have Keycloak's states: active (published, signs new tokens), passive (published, verifies only),
  disabled (not published). A realm deleted with ``remove_realm`` answers 404 like a deleted Keycloak realm.
- Keys come from a process-wide pool: within one ``FakeKeycloak`` every key is distinct, while separate
  instances reuse the same keys, so a suite creating hundreds of realms generates each key once.
- ``mint`` produces tokens shaped exactly like a Keycloak admin access token (62 roles, ~4.7 KB for RS256);
  any claim, Hasura claim or header field can be overridden, or removed with ``DROP``, to craft bad tokens.
  As in Keycloak 25+: no ``session_state`` claim (only ``sid``); ``grant="client_credentials"`` has no
  ``sid`` and scope ``profile email``; ``aud: account`` and the account ``resource_access`` come only with
  a ``default-roles-…`` role (the account client roles its composite carries: users imported in a realm
  JSON have none, users created at run time do). tests/keycloak/test_contract.py holds all of this to the
  real server.
  The signature is always computed with ``alg`` (default: the key's), whatever the header claims.
- Fault modes never sleep: "slow" blocks on an event set by ``release_slow()`` and by shutdown.
- Everything received is recorded; the fakes never make a request themselves, except
  ``send_backchannel_logout`` when a test calls it (Keycloak's back-channel logout POST, as the real
  26.7.3 sends it: ``logout_token`` minted by ``logout_token``).
- The admin API (``configure_admin``; modelled in ``webhook/testing/fakeadmin.py`` on what the real
  Keycloak did in tests): the client-credentials token endpoint of the admin realm and the realm,
  partial-import, client, mapper, role and secret endpoints behind its bearer tokens. A realm created
  there is in ``admin_realms`` and also served (with generated keys), so tokens can be minted
  for it; every admin call is recorded in ``admin_calls``; ``set_admin_behaviour("down")`` makes the
  admin API (token endpoint included) answer 503. A confidential service-account client created
  through the admin API (an API key) gets client-credentials tokens from its realm's token endpoint:
  ``sub`` = its service account, no ``sid``, its mappers' claims, no ``realm_access`` or ``aud: account``
  with full scope off; 401 ``unauthorized_client`` for a wrong secret, ``invalid_client`` for a deleted
  client (as Keycloak 26.7.3: tests/keycloak/test_api_key_contract.py).
- The controls (``set_behaviour``, ``add_realm``, ``wait_for_jwks_fetches``...) belong to the event loop
  serving the fake; call them from that loop's thread.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import enum
import functools
import hashlib
import hmac
import json
import re
import time
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, KeySetSerialization, OctKey, RSAKey
from joserfc.jws import JWSRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.testing.fakeadmin import AdminCall, FakeAdminApi, mapped_claims
from webhook.testing.server import serve_asgi, serve_asgi_in_thread

__all__ = [
    "DROP",
    "HASURA_CLAIMS",
    "ROLES",
    "AdminCall",
    "AttackerHost",
    "Behaviour",
    "FakeKeycloak",
    "FakeRealm",
    "Grant",
    "Hit",
    "KeyState",
    "SigningKey",
    "attacker_key",
    "keycloak_kid",
    "sign_raw",
]

# The 62 realm roles of a real Keycloak admin access token (also its Hasura allowed roles).
ROLES: Final[tuple[str, ...]] = (
    "support-material-write",
    "election-type-create",
    "role-write",
    "tally-results-read",
    "election-event-create",
    "tally-sheet-view",
    "voting-channel-read",
    "tally-write",
    "user-create",
    "uma_authorization",
    "tally-sheet-delete",
    "admin-dashboard-view",
    "user-read",
    "notification-write",
    "tenant-create",
    "document-download",
    "notification-send",
    "tally-read",
    "tally-sheet-publish",
    "tenant-write",
    "trustee-create",
    "support-material-read",
    "election-type-write",
    "admin-ceremony",
    "voter-write",
    "notification-read",
    "communication-template-write",
    "tally-start",
    "tenant-read",
    "user-permission-read",
    "document-write",
    "publish-read",
    "trustee-read",
    "cast-vote-read",
    "create-election-event",
    "election-event-read",
    "voting-channel-write",
    "role-assign",
    "document-read",
    "role-read",
    "admin-user",
    "communication-template-read",
    "election-event-write",
    "election-type-read",
    "offline_access",
    "voter-create",
    "communication-template-create",
    "user-permission-create",
    "keys-read",
    "voter-read",
    "user-write",
    "area-read",
    "tally-sheet-create",
    "role-create",
    "default-roles-electoral-process",
    "election-state-write",
    "document-upload",
    "trustee-write",
    "area-write",
    "user-permission-write",
    "publish-write",
    "logs-read",
)

HASURA_CLAIMS: Final = "https://hasura.io/jwt/claims"
BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"

Behaviour = Literal["ok", "down", "slow", "garbage", "html", "huge", "redirect", "empty_keys"]
#: The OAuth grant a minted token stands for (what ``sid`` and ``scope`` depend on).
Grant = Literal["password", "authorization_code", "refresh_token", "client_credentials"]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_REALM_NAME = re.compile(rf"tenant-(?P<tenant>{_UUID})(?:-event-(?P<event>{_UUID}))?")
_RSA_ALGS: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_HUGE_CHUNK = 64 * 1024
_HUGE_CHUNKS = 160  # ~10 MB
_ACCOUNT_ROLES: Final = ("manage-account", "manage-account-links", "view-profile")


class _Drop(enum.Enum):
    DROP = "DROP"


#: Value for ``claims`` / ``hasura_claims`` / ``header`` overrides that removes the field.
DROP: Final = _Drop.DROP

AsymmetricKey = RSAKey | ECKey
#: What a token can be signed with: a joserfc key, a PEM (private key, or any bytes as an HMAC secret),
#: or a ``cryptography`` private key.
SigningKey = RSAKey | ECKey | OctKey | bytes | str | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# --------------------------------------------------------------------------------------------- keys


def _family(alg: str) -> str:
    """Key family of a signing algorithm: "RSA" or an EC curve name."""
    if alg in _RSA_ALGS:
        return "RSA"
    if alg in _EC_CURVES:
        return _EC_CURVES[alg]
    raise ValueError(f"unsupported signing algorithm for a realm key: {alg!r}")


@functools.cache
def _pooled_key(family: str, slot: int) -> AsymmetricKey:
    """The private key at ``slot`` of the process-wide pool (RSA-2048 costs ~0.1 s: generate once)."""
    if family == "RSA":
        return RSAKey.generate_key(2048, private=True)
    return ECKey.generate_key(family, private=True)


def attacker_key(algorithm: str = "RS256", index: int = 0) -> AsymmetricKey:
    """A private key that belongs to no realm of any ``FakeKeycloak`` (cached per algorithm family)."""
    return _pooled_key(_family(algorithm), -1 - index)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _load_private_pem(pem: bytes | str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(pem.encode("utf-8") if isinstance(pem, str) else pem, None)
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unsupported private key type {type(loaded).__name__}")
    return loaded


def _guess_alg(key: SigningKey) -> str:
    """The algorithm a key naturally signs with: RS256, ES256/384/512 by curve, or HS256 for a secret."""
    if isinstance(key, bytes | str):
        pem = key.encode("utf-8") if isinstance(key, str) else key
        if b"PRIVATE KEY" not in pem:
            return "HS256"
        key = _load_private_pem(pem)
    if isinstance(key, RSAKey | rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        key = ECKey.import_key(key)
    if isinstance(key, ECKey):
        return {"P-384": "ES384", "P-521": "ES512"}.get(key.curve_name, "ES256")
    return "HS256"


def _coerce_asymmetric(key: SigningKey) -> AsymmetricKey | OctKey:
    if isinstance(key, bytes | str):
        key = _load_private_pem(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(key)
    return key


def _hmac_secret(key: SigningKey) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, OctKey):
        return key.raw_value
    raise TypeError(f"an HMAC algorithm needs a secret (bytes, str or OctKey), not {type(key).__name__}")


def sign_raw(
    header: Mapping[str, Any],
    payload: bytes | Mapping[str, Any],
    key: SigningKey | None,
    *,
    alg: str | None = None,
) -> str:
    """Serialize and sign a compact JWS exactly as given, with no validation of header or payload.

    ``alg`` (default: ``header["alg"]``) picks how the signature is computed: "none" gives an empty
    signature, "HS*" uses ``key`` as the raw secret (e.g. a realm's public PEM, for the classic confusion
    attack), anything else signs with the private ``key``. ``payload`` bytes are used verbatim.
    """
    signing_alg = alg if alg is not None else str(header.get("alg", "none"))
    body = bytes(payload) if isinstance(payload, bytes) else _json_bytes(dict(payload))
    signing_input = f"{_b64url(_json_bytes(dict(header)))}.{_b64url(body)}".encode("ascii")
    if signing_alg == "none":
        signature = b""
    else:
        if key is None:
            raise ValueError(f"algorithm {signing_alg!r} needs a key")
        if signing_alg.startswith("HS"):
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[signing_alg]
            signature = hmac.new(_hmac_secret(key), signing_input, digest).digest()
        else:
            model = JWSRegistry.algorithms.get(signing_alg)
            if model is None:
                raise ValueError(f"unknown JWS algorithm {signing_alg!r}")
            signature = model.sign(signing_input, _coerce_asymmetric(key))
    return f"{signing_input.decode('ascii')}.{_b64url(signature)}"


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    for name, value in (overrides or {}).items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def _self_signed_der(key: RSAKey, common_name: str) -> bytes:
    """A self-signed certificate for ``key``, like the one Keycloak publishes in ``x5c``."""
    private = key.private_key
    if not isinstance(private, rsa.RSAPrivateKey):
        raise TypeError("a certificate needs the private RSA key")
    # Keycloak puts the whole realm name in CN, even past X.509's 64-character bound (event realms have 86).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, _validate=False)])
    issued = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(common_name.encode()).digest()[:8], "big"))
        .not_valid_before(issued)
        .not_valid_after(issued + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


#: Keycloak's key statuses (``GET /admin/realms/{realm}/keys``): active signs, passive only verifies,
#: disabled is no longer published.
KeyState = Literal["active", "passive", "disabled"]


def keycloak_kid(key: AsymmetricKey) -> str:
    """Keycloak's ``KeyUtils.createKeyId``: base64url(SHA-256(SubjectPublicKeyInfo DER))."""
    der = key.as_der(private=False)
    return _b64url(hashlib.sha256(der).digest())


@dataclass(eq=False)
class _RealmKey:
    key: AsymmetricKey
    alg: str  # the JWS algorithm for a "sig" key, "RSA-OAEP" for the "enc" key
    use: Literal["sig", "enc"]
    realm: str
    kid: str = field(init=False)
    state: KeyState = "active"
    _jwk: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.kid = keycloak_kid(self.key)

    def public_jwk(self) -> dict[str, Any]:
        """The key as Keycloak publishes it (field order included); computed once."""
        if self._jwk is None:
            material = dict(self.key.as_dict(private=False))
            material.pop("kty", None)
            jwk: dict[str, Any] = {
                "kid": self.kid,
                "kty": self.key.key_type,
                "alg": self.alg,
                "use": self.use,
            }
            jwk.update(material)
            if isinstance(self.key, RSAKey):
                der = _self_signed_der(self.key, self.realm)
                jwk["x5c"] = [base64.b64encode(der).decode("ascii")]
                jwk["x5t"] = _b64url(hashlib.sha1(der, usedforsecurity=False).digest())
                jwk["x5t#S256"] = _b64url(hashlib.sha256(der).digest())
            self._jwk = jwk
        return dict(self._jwk)


# -------------------------------------------------------------------------------------------- realms


class FakeRealm:
    """One realm of a ``FakeKeycloak``: its keys and the identity its name carries."""

    def __init__(self, owner: FakeKeycloak, name: str) -> None:
        self._owner = owner
        self.name = name
        match = _REALM_NAME.fullmatch(name)
        self.tenant_id: str | None = match["tenant"] if match else None
        self.event_id: str | None = match["event"] if match else None
        self._signing: list[_RealmKey] = []
        self._active: _RealmKey | None = None
        self._enc: _RealmKey | None = None

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

    # internals used by FakeKeycloak

    def _active_entry(self) -> _RealmKey:
        if self._active is None:
            raise LookupError(f"realm {self.name!r} publishes no signing key")
        return self._active

    def _entry(self, kid: str | None) -> _RealmKey:
        if kid is None:
            return self._active_entry()
        for entry in (*self._signing, *([self._enc] if self._enc is not None else [])):
            if entry.kid == kid:
                return entry
        raise KeyError(f"realm {self.name!r} has no key {kid!r}")

    def _add_signing_key(self, algorithm: str, pem: bytes | None) -> _RealmKey:
        family = _family(algorithm)
        if pem is None:
            key = self._owner._allocate_key(family)
        elif family == "RSA":
            key = RSAKey.import_key(pem)
        else:
            key = ECKey.import_key(pem)
        entry = _RealmKey(key=key, alg=algorithm, use="sig", realm=self.name)
        self._signing.append(entry)
        self._active = entry
        return entry

    def _add_enc_key(self) -> None:
        self._enc = _RealmKey(key=self._owner._allocate_key("RSA"), alg="RSA-OAEP", use="enc", realm=self.name)


# ------------------------------------------------------------------------------------------ keycloak


class _Recorder:
    """ASGI wrapper recording (method, path) of every HTTP request before the app sees it."""

    def __init__(self, app: ASGIApp, owner: FakeKeycloak) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.owner.requests.append((str(scope["method"]), str(scope["path"])))
            await self.owner._notify()
        await self.app(scope, receive, send)


async def _huge_body() -> AsyncIterator[bytes]:
    yield b'{"keys":[],"padding":"'
    chunk = b"A" * _HUGE_CHUNK
    for _ in range(_HUGE_CHUNKS):
        yield chunk
    yield b'"}'


class FakeKeycloak:
    """Keycloak's realm key endpoints, served for real, plus a minter of Keycloak-shaped tokens.

    Use ``async with FakeKeycloak.start() as kc`` in tests; ``FakeKeycloak(issuer_base=...)`` alone mints
    tokens without serving, and ``kc.serve_in_thread()`` serves for synchronous callers.
    """

    def __init__(self, *, issuer_base: str | None = None) -> None:
        self._issuer_base = issuer_base.rstrip("/") if issuer_base is not None else None
        self._url: str | None = None
        self._realms: dict[str, FakeRealm] = {}
        self._slots: Counter[str] = Counter()
        self._minted = 0
        self._default_behaviour: Behaviour = "ok"
        self._realm_behaviour: dict[str, Behaviour] = {}
        self._redirect_to: str | None = None
        self._slow_gate = asyncio.Event()
        self._changed = asyncio.Condition()
        #: certs requests per realm name in the path, counted on arrival, whatever the answer.
        self.jwks_fetches: Counter[str] = Counter()
        #: (method, path) of every request received, in arrival order.
        self.requests: list[tuple[str, str]] = []
        #: The admin API (webhook/testing/fakeadmin.py): realms, clients, mappers, roles, its token.
        self.admin_api = FakeAdminApi(on_created=self._admin_created, on_deleted=self._admin_deleted)
        self.app: ASGIApp = _Recorder(
            Starlette(
                routes=[
                    Route("/realms/{realm}/protocol/openid-connect/certs", self._certs, methods=["GET"]),
                    Route(
                        "/realms/{realm}/.well-known/openid-configuration",
                        self._openid_configuration,
                        methods=["GET"],
                    ),
                    Route("/realms/{realm}/protocol/openid-connect/token", self._token, methods=["POST"]),
                    Mount("/admin", app=self.admin_api.app),
                ]
            ),
            self,
        )

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
        # asyncio primitives bind to the first loop that waits on them: one set per serving loop.
        self._slow_gate = asyncio.Event()
        self._changed = asyncio.Condition()
        self.admin_api.reset_loop_state()

    @property
    def url(self) -> str:
        """Base URL the fake is served on (the internal Keycloak URL)."""
        if self._url is None:
            raise RuntimeError("this FakeKeycloak is not being served")
        return self._url

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
        return _pooled_key(family, slot)

    # ---- tokens

    def mint(
        self,
        realm: str,
        *,
        sub: str | None = None,
        roles: Sequence[str] | None = None,
        default_role: str = "admin-user",
        lifetime: int = 300,
        now: int | None = None,
        claims: Mapping[str, Any] | None = None,
        hasura_claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        kid: str | None = None,
        alg: str | None = None,
        signing_key: SigningKey | None = None,
        typ: str = "Bearer",
        azp: str = "admin-portal",
        grant: Grant = "password",
    ) -> str:
        """A Keycloak access token of ``realm`` (see the module rules for overrides and ``DROP``).

        ``kid`` signs with that key of the realm (the enc key included, to test misuse);
        ``signing_key`` signs with a foreign key while the header still names the realm's active kid
        (unless ``kid`` says otherwise); ``alg`` is the signing algorithm, default the key's own.
        ``grant`` shapes what depends on it: ``client_credentials`` tokens have no ``sid`` and no ``openid``
        scope (the others stand for a request with ``scope=openid``, as the portals and the tutorial send).
        """
        fake_realm = self._realms[realm]
        issued = int(time.time()) if now is None else now
        user = sub if sub is not None else str(uuid.uuid4())
        role_list = list(ROLES if roles is None else roles)
        self._minted += 1
        number = self._minted
        session = str(uuid.uuid4())

        hasura: dict[str, Any] = {"x-hasura-default-role": default_role}
        if fake_realm.tenant_id is not None:
            hasura["x-hasura-tenant-id"] = fake_realm.tenant_id
        if fake_realm.event_id is not None:
            hasura["x-hasura-event-id"] = fake_realm.event_id
        hasura["x-hasura-user-id"] = user
        hasura["x-hasura-allowed-roles"] = role_list
        # The account client roles (and with them aud "account") come from the default role's composites.
        account = any(role.startswith("default-roles-") for role in role_list)
        payload: dict[str, Any] = {
            "exp": issued + lifetime,
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "iss": fake_realm.issuer,
            **({"aud": "account"} if account else {}),
            "sub": user,
            "typ": typ,
            "azp": azp,
            **({"sid": session} if grant != "client_credentials" else {}),
            "acr": "1",
            "allowed-origins": ["*"],
            "realm_access": {"roles": role_list},
            **({"resource_access": {"account": {"roles": list(_ACCOUNT_ROLES)}}} if account else {}),
            "scope": "profile email" if grant == "client_credentials" else "openid profile email",
            "email_verified": True,
            HASURA_CLAIMS: _merge(hasura, hasura_claims),
            "name": f"Test User{number}",
            "preferred_username": f"user{number}",
            "given_name": "Test",
            "family_name": f"User{number}",
            "email": f"user{number}@example.com",
        }
        _merge(payload, claims)

        key: SigningKey
        if signing_key is not None:
            key = signing_key
            header_kid = kid if kid is not None else fake_realm.active_kid
            signing_alg = alg if alg is not None else _guess_alg(signing_key)
        else:
            entry = fake_realm._entry(kid)
            key = entry.key
            header_kid = entry.kid
            signing_alg = alg if alg is not None else (entry.alg if entry.use == "sig" else "RS256")
        protected = _merge({"alg": signing_alg, "typ": "JWT", "kid": header_kid}, header)
        return sign_raw(protected, payload, key, alg=signing_alg)

    def logout_token(
        self,
        realm: str,
        *,
        sub: str | None = None,
        sid: str | None = None,
        client_id: str = "voting-portal",
        now: int | None = None,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
        signing_key: SigningKey | None = None,
    ) -> str:
        """A back-channel logout token shaped as Keycloak 26 sends it (``TokenManager.initLogoutToken``).

        Header ``{"alg", "typ": "logout+jwt", "kid"}``; claims in Keycloak's order: ``exp`` (iat + 120),
        ``iat``, ``jti``, ``iss``, ``aud`` (the client id), ``sub``, ``typ: "Logout"``, ``sid`` (omitted when
        None: the client's ``backchannel.logout.session.required`` off), ``events``. Overrides and ``DROP``
        work as in ``mint``.
        """
        fake_realm = self._realms[realm]
        issued = int(time.time()) if now is None else now
        payload: dict[str, Any] = {
            "exp": issued + 120,
            "iat": issued,
            "jti": str(uuid.uuid4()),
            "iss": fake_realm.issuer,
            "aud": client_id,
            "sub": sub if sub is not None else str(uuid.uuid4()),
            "typ": "Logout",
        }
        if sid is not None:
            payload["sid"] = sid
        payload["events"] = {BACKCHANNEL_LOGOUT_EVENT: {}}
        _merge(payload, claims)
        entry = fake_realm._active_entry()
        key: SigningKey = signing_key if signing_key is not None else entry.key
        alg = _guess_alg(signing_key) if signing_key is not None else entry.alg
        protected = _merge({"alg": alg, "typ": "logout+jwt", "kid": entry.kid}, header)
        return sign_raw(protected, payload, key, alg=alg)

    async def send_backchannel_logout(self, url: str, logout_token: str) -> tuple[int, bytes]:
        """POST ``logout_token`` to a client's ``backchannel.logout.url`` as Keycloak does (form body,
        Apache HttpClient headers); the status and body of the answer. The one request a fake makes."""
        import httpx  # noqa: PLC0415 - only this call needs a client

        async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
            response = await client.post(
                url,
                data={"logout_token": logout_token},
                headers={"User-Agent": "Apache-HttpClient/4.5.14 (Java/21.0.8)", "Accept-Encoding": "gzip,deflate"},
            )
        return response.status_code, response.content

    # ---- behaviour and counters

    def set_behaviour(self, mode: Behaviour, realm: str | None = None, *, redirect_to: str | None = None) -> None:
        """Make the endpoints of ``realm`` (None: all realms, clearing per-realm modes) answer per ``mode``.

        "down": 503; "slow": wait for ``release_slow()`` then answer normally; "garbage": 200 non-JSON;
        "html": 200 HTML page; "huge": 200 streamed ~10 MB JSON; "redirect": 302 to ``redirect_to``
        (default: this fake's own ``/evil``, so a followed redirect shows up in ``requests``);
        "empty_keys": certs answer ``{"keys": []}``.
        """
        if realm is None:
            self._default_behaviour = mode
            self._realm_behaviour.clear()
        else:
            self._realm_behaviour[realm] = mode
        if redirect_to is not None:
            self._redirect_to = redirect_to
        if mode == "slow":
            self._slow_gate.clear()

    def release_slow(self) -> None:
        """Let every request held by "slow" (now and until "slow" is set again) proceed."""
        self._slow_gate.set()

    def behaviour(self, realm: str) -> Behaviour:
        return self._realm_behaviour.get(realm, self._default_behaviour)

    @property
    def total_requests(self) -> int:
        return len(self.requests)

    def reset_counters(self) -> None:
        self.jwks_fetches.clear()
        self.requests.clear()

    async def wait_for_jwks_fetches(self, realm: str, count: int = 1) -> None:
        """Return once ``jwks_fetches[realm] >= count`` (bound it with ``asyncio.timeout``/``anyio``)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.jwks_fetches[realm] >= count)

    async def wait_for_request(self, method: str, path_prefix: str) -> None:
        """Return once a request ``method`` to a path starting with ``path_prefix`` has arrived (bound it)."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: any(m == method and p.startswith(path_prefix) for m, p in self.requests)
            )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- endpoints

    async def _fault(self, mode: Behaviour) -> Response | None:
        if mode == "down":
            return PlainTextResponse("Service Unavailable", status_code=503)
        if mode == "slow":
            await self._slow_gate.wait()
            return None
        if mode == "garbage":
            return Response(b"\x00\xff{not json, really\x89PNG", media_type="application/json")
        if mode == "html":
            return HTMLResponse(
                "<!DOCTYPE html><html><head><title>Sign in to Keycloak</title></head>"
                "<body><p>We are sorry... Page not found</p></body></html>"
            )
        if mode == "huge":
            return StreamingResponse(_huge_body(), media_type="application/json")
        if mode == "redirect":
            return RedirectResponse(self._redirect_to or f"{self.url}/evil", status_code=302)
        return None

    async def _certs(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        self.jwks_fetches[name] += 1
        await self._notify()
        mode = self.behaviour(name)
        fault = await self._fault(mode)
        if fault is not None:
            return fault
        realm = self._realms.get(name)
        if realm is None:
            return _realm_missing()
        body = {"keys": []} if mode == "empty_keys" else realm.jwks()
        return Response(_json_bytes(body), media_type="application/json", headers={"Cache-Control": "no-cache"})

    async def _openid_configuration(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        fault = await self._fault(self.behaviour(name))
        if fault is not None:
            return fault
        realm = self._realms.get(name)
        if realm is None:
            return _realm_missing()
        return Response(_json_bytes(realm.openid_configuration()), media_type="application/json")

    # ---- admin API (the model is webhook/testing/fakeadmin.py)

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

    def _client_credentials(self, request: Request, form: Mapping[str, list[str]]) -> tuple[str, str]:
        basic = request.headers.get("authorization", "")
        if basic[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                return "", ""
            return client_id, secret
        return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]

    async def _token(self, request: Request) -> Response:
        name = str(request.path_params["realm"])
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        client_id, secret = self._client_credentials(request, form)
        grant = form.get("grant_type", [""])[0]
        if name != self.admin_api.admin_realm:
            if name not in self._realms:
                return _realm_missing()
            if grant == "client_credentials" and name in self.admin_api.realms:
                return self._service_token(name, client_id, secret)
            return JSONResponse({"error": "unauthorized_client", "error_description": "Invalid client"}, 401)
        return await self.admin_api.token(request, client_id, secret, grant)

    def _service_token(self, realm: str, client_id: str, secret: str) -> Response:
        """The client-credentials grant of a client the admin API holds: its mappers' claims, no sid."""
        found = self.admin_api.service_credentials(realm, client_id, secret)
        if isinstance(found, str):
            return JSONResponse(
                {"error": found, "error_description": "Invalid client or Invalid client credentials"}, 401
            )
        client, account = found
        mapped, audiences = mapped_claims(client.get("protocolMappers"), account)
        hasura = mapped.pop(HASURA_CLAIMS, {})
        extra: dict[str, Any] = {
            **mapped,
            "preferred_username": f"service-account-{client_id}",
            "client_id": client_id,
            "email_verified": False,
            **dict.fromkeys(("name", "given_name", "family_name", "email"), DROP),  # a service account has none
        }
        full_scope = client.get("fullScopeAllowed", True) is not False
        if not full_scope:  # no realm role is in the client's scope: no realm_access, no account audience
            extra["realm_access"] = DROP
        if audiences:
            extra["aud"] = audiences[0] if len(audiences) == 1 else audiences
        token = self.mint(
            realm,
            sub=account,
            roles=[f"default-roles-{realm}"] if full_scope else [],
            default_role=str(hasura.get("x-hasura-default-role", "")),
            hasura_claims=hasura,
            claims=extra,
            azp=client_id,
            grant="client_credentials",
        )
        return JSONResponse(
            {
                "access_token": token,
                "expires_in": 300,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
            }
        )


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


def _realm_missing() -> Response:
    return JSONResponse({"error": "Realm does not exist"}, status_code=404)


# ------------------------------------------------------------------------------------------ attacker


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
        await Response(_json_bytes(self.jwks()), media_type="application/json")(scope, receive, send)
