"""The verifier: one token in, an `Identity` out, or `Rejected` with the first failed check.

Order of checks (cheapest and most discriminating first; each has its own reason code):
 1. well-formed compact JWS, size-capped, header members allowed     token.parse
 2. header `alg` in the allow-list                                    token.check_algorithm
 3. `iss` is exactly `<issuer base>/realms/<trusted realm>`           RealmPolicy.realm_from_issuer
 3b. (STRICT_REALM_REGISTRY) the realm's tenant/event is in our DB    RealmRegistry.is_registered
 4. signing key by `kid` from that realm's JWKS (may fetch)           JwksCache.key_for
 5. signature                                                          token.verify_signature
 6. exp / nbf / iat (leeway), typ == Bearer, aud, azp                  token.check_claims
 7. Hasura claims present, well typed, agreeing with the realm        session.identity_from_claims
 7b. an API key's token: the key's expiry (claim `api_key.exp`)       apikeyclaim.check_not_expired
     (reported first to `on_api_key`, expired or not: the expiry metric of webhook.observability.apikeyexpiry)
 8. the realm kind's powers attached; PLATFORM_ROLES kept only with them  powers.powers_of
 9. the session is not revoked (also checked on a verified-token cache hit)   RevocationService.revoked

`verify_logout` runs checks 1-5 unchanged on a back-channel logout token, then the logout checks
of `webhook.core.logouttoken` (never the access-token claims, never the cache).

This is the only module that combines the pure checks with the cache's IO; the auth hook and the
action handlers both call `Verifier.verify`, so a token means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from webhook.auth.jwks import JwksCache
from webhook.auth.tokencache import CachedRejection, VerifiedTokenCache
from webhook.core.apikeyclaim import KIND_API_KEY, ApiKeyClaim, api_key_claim, check_not_expired
from webhook.core.logouttoken import LogoutClaims, check_logout_claims
from webhook.core.powers import Power, powers_of
from webhook.core.realms import Realm, RealmPolicy, RealmRegistry
from webhook.core.reasons import Reason, Rejected
from webhook.core.session import Identity, identity_from_claims
from webhook.core.token import (
    ClaimsPolicy,
    ParsedToken,
    TokenDigests,
    TokenFacts,
    check_algorithm,
    check_claims,
    digests,
    verify_signature,
)
from webhook.core.token import parse as parse_token


class TokenRejected(Rejected):
    """`Rejected` plus the token's claimed facts and digest; raised by `Verifier.verify`."""

    __slots__ = ("digest", "facts", "realm")

    def __init__(self, rejected: Rejected, facts: TokenFacts, realm: Realm | None, digest: bytes) -> None:
        super().__init__(rejected.reason, rejected.detail)
        self.facts = facts
        self.realm = realm
        self.digest = digest


def _revoked_rejection(identity: Identity, digest: bytes) -> TokenRejected:
    facts = TokenFacts(sub=identity.sub, iss=None)
    return TokenRejected(Rejected(Reason.SESSION_REVOKED, "the session was revoked"), facts, identity.realm, digest)


class Verifier:
    """Verifies Keycloak access tokens from any trusted realm."""

    def __init__(
        self,
        *,
        realms: RealmPolicy,
        cache: JwksCache,
        algorithms: frozenset[str],
        claims: ClaimsPolicy,
        forbidden_roles: frozenset[str],
        platform_roles: frozenset[str] = frozenset(),
        super_admin_tenant: str | None = None,
        max_token_bytes: int,
        wall_clock: Callable[[], float],
        token_cache: VerifiedTokenCache | None = None,
        realm_registry: RealmRegistry | None = None,
        on_verified: Callable[[str], None] | None = None,
        revoked: Callable[[Identity], bool] | None = None,
        on_api_key: Callable[[Realm, ApiKeyClaim | None], None] | None = None,
    ) -> None:
        self._realms = realms
        self._cache = cache
        self._algorithms = algorithms
        self._claims = claims
        self._forbidden = forbidden_roles
        self._platform = platform_roles
        self._super_tenant = super_admin_tenant
        self._max_bytes = max_token_bytes
        self._now = wall_clock
        self._tokens = token_cache
        self._realm_registry = realm_registry
        self._on_verified = on_verified  # realm name, once a signature verified with its keys
        self._revoked = revoked  # the revocation check (webhook.revocation.service), after the cache too
        self._on_api_key = on_api_key  # an API key's verified token, expired or not (observability.apikeyexpiry)

    async def verify(self, token: str) -> Identity:
        """The identity `token` proves; `TokenRejected` with the reason of the first failed check."""
        hashed = digests(token)
        digest = hashed.token
        tokens = self._tokens
        if tokens is not None:
            cached = tokens.get(digest)
            if type(cached) is Identity:
                revoked = self._revoked
                if revoked is not None and revoked(cached):
                    raise _revoked_rejection(cached, digest)
                return cached
            if type(cached) is CachedRejection:
                raise TokenRejected(Rejected(cached.reason, cached.detail), cached.facts, cached.realm, digest)
        parsed: ParsedToken | None = None
        realm: Realm | None = None
        try:
            parsed = parse_token(token, max_bytes=self._max_bytes)
            realm = self._realm_of(parsed)
            await self._check_signed(parsed, realm, hashed)
            check_claims(parsed.claims, self._claims, self._now())
            powers = powers_of(realm, self._super_tenant)
            # platform-wide roles only from the super-admin tenant's own realm (webhook/core/powers.py)
            dropped = frozenset() if Power.PLATFORM_ROLES in powers else self._platform
            identity = identity_from_claims(parsed.claims, realm, self._forbidden, powers=powers, dropped_roles=dropped)
            if identity.kind == KIND_API_KEY:
                key = api_key_claim(parsed.claims)
                if self._on_api_key is not None:
                    self._on_api_key(realm, key)
                check_not_expired(key, self._now())
        except Rejected as exc:
            facts = TokenFacts.of(parsed)
            if tokens is not None:
                tokens.put_rejection(digest, CachedRejection(exc.reason, exc.detail, facts, realm))
            raise TokenRejected(exc, facts, realm, digest) from None
        if tokens is not None:
            tokens.put_identity(digest, identity)
        revoked = self._revoked
        if revoked is not None and revoked(identity):
            raise _revoked_rejection(identity, digest)
        return identity

    def _realm_of(self, parsed: ParsedToken) -> Realm:
        """Checks 2-3: allowed alg, trusted issuer -> realm."""
        check_algorithm(parsed, self._algorithms)
        return self._realms.realm_from_issuer(parsed.claims.get("iss"))

    async def _check_signed(self, parsed: ParsedToken, realm: Realm, hashed: TokenDigests) -> None:
        """Checks 3b-5: (registered), the realm's key by kid, the signature."""
        registry = self._realm_registry
        if registry is not None and not await registry.is_registered(realm):
            raise Rejected(Reason.UNKNOWN_REALM, "realm is not registered in the database (strict registry)")
        kid = parsed.kid
        if kid is None:
            raise Rejected(Reason.UNKNOWN_KID, "header kid is missing")
        key = self._cache.cached_key(realm, kid) or await self._cache.key_for(realm, kid)
        verify_signature(parsed, key, hashed)
        if self._on_verified is not None:
            self._on_verified(realm.name)

    async def verify_logout(self, token: str, *, audiences: frozenset[str]) -> tuple[Realm, LogoutClaims]:
        """A back-channel logout token, checked as strictly as an access token (same realm binding and
        keys) and then as the spec asks (`webhook.core.logouttoken`); `TokenRejected` otherwise. Never cached."""
        hashed = digests(token)
        digest = hashed.token
        parsed: ParsedToken | None = None
        realm: Realm | None = None
        try:
            parsed = parse_token(token, max_bytes=self._max_bytes)
            realm = self._realm_of(parsed)
            await self._check_signed(parsed, realm, hashed)
            claims = check_logout_claims(parsed, leeway=self._claims.leeway, audiences=audiences, now=self._now())
        except Rejected as exc:
            raise TokenRejected(exc, TokenFacts.of(parsed), realm, digest) from None
        return realm, claims

    def explain_parse(self, token: str) -> tuple[TokenFacts, Realm | None]:
        """What a token claims (for `webhook explain`), without verifying or fetching anything."""
        try:
            parsed = parse_token(token, max_bytes=self._max_bytes)
        except Rejected:
            return TokenFacts(), None
        try:
            realm = self._realms.realm_from_issuer(parsed.claims.get("iss"))
        except Rejected:
            realm = None
        return TokenFacts.of(parsed), realm
