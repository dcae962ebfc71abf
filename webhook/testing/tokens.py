"""Keycloak-shaped tokens of the fake Keycloak: access tokens (``mint``) and back-channel logout tokens.

Rules of this module:
- ``mint`` produces tokens shaped exactly like a Keycloak admin access token (62 roles, ~4.7 KB for RS256);
  any claim, Hasura claim or header field can be overridden, or removed with ``DROP``, to craft bad tokens.
  As in Keycloak 25+: no ``session_state`` claim (only ``sid``); ``grant="client_credentials"`` has no
  ``sid`` and scope ``profile email``; ``aud: account`` and the account ``resource_access`` come only with
  a ``default-roles-…`` role (the account client roles its composite carries: users imported in a realm
  JSON have none, users created at run time do). tests/keycloak/test_contract.py holds all of this to the
  real server.
  The signature is always computed with ``alg`` (default: the key's), whatever the header claims.
- ``send_backchannel_logout`` is the one request a fake makes, and only when a test calls it (Keycloak's
  back-channel logout POST, as the real 26.7.3 sends it: ``logout_token`` minted by ``logout_token``).
- ``TokenMinter`` is a base of ``FakeKeycloak``: it reads the realms the fake holds and numbers the
  tokens it mints (the ``userN`` identity claims), nothing else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from webhook.testing.keys import SigningKey, guess_alg, merge_overrides, sign_raw
from webhook.testing.realm import FakeRealm

__all__ = ["BACKCHANNEL_LOGOUT_EVENT", "HASURA_CLAIMS", "ROLES", "Grant", "TokenMinter"]

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
#: The OAuth grant a minted token stands for (what ``sid`` and ``scope`` depend on).
Grant = Literal["password", "authorization_code", "refresh_token", "client_credentials"]
_ACCOUNT_ROLES: Final = ("manage-account", "manage-account-links", "view-profile")


class TokenMinter:
    """Mints the tokens of the realms in ``_realms`` (a base of ``FakeKeycloak``, which fills both fields)."""

    _realms: dict[str, FakeRealm]
    _minted: int

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
            HASURA_CLAIMS: merge_overrides(hasura, hasura_claims),
            "name": f"Test User{number}",
            "preferred_username": f"user{number}",
            "given_name": "Test",
            "family_name": f"User{number}",
            "email": f"user{number}@example.com",
        }
        merge_overrides(payload, claims)

        key: SigningKey
        if signing_key is not None:
            key = signing_key
            header_kid = kid if kid is not None else fake_realm.active_kid
            signing_alg = alg if alg is not None else guess_alg(signing_key)
        else:
            entry = fake_realm._entry(kid)
            key = entry.key
            header_kid = entry.kid
            signing_alg = alg if alg is not None else (entry.alg if entry.use == "sig" else "RS256")
        protected = merge_overrides({"alg": signing_alg, "typ": "JWT", "kid": header_kid}, header)
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
        merge_overrides(payload, claims)
        entry = fake_realm._active_entry()
        key: SigningKey = signing_key if signing_key is not None else entry.key
        alg = guess_alg(signing_key) if signing_key is not None else entry.alg
        protected = merge_overrides({"alg": alg, "typ": "logout+jwt", "kid": entry.kid}, header)
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
