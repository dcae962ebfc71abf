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

This is the only module that combines the pure checks with the cache's IO; the auth hook and the
action handlers both call `Verifier.verify`, so a token means the same thing everywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from webhook.apikeyclaim import KIND_API_KEY, api_key_claim, check_not_expired
from webhook.jwks import JwksCache
from webhook.realms import Realm, RealmPolicy, RealmRegistry
from webhook.reasons import Reason, Rejected
from webhook.session import Identity, identity_from_claims
from webhook.token import (
    ClaimsPolicy,
    ParsedToken,
    TokenFacts,
    check_algorithm,
    check_claims,
    make_registry,
    verify_signature,
)
from webhook.token import parse as parse_token
from webhook.tokencache import CachedRejection, VerifiedTokenCache


class TokenRejected(Rejected):
    """`Rejected` plus the token's claimed facts and digest; raised by `Verifier.verify`."""

    __slots__ = ("digest", "facts", "realm")

    def __init__(self, rejected: Rejected, facts: TokenFacts, realm: Realm | None, digest: bytes) -> None:
        super().__init__(rejected.reason, rejected.detail)
        self.facts = facts
        self.realm = realm
        self.digest = digest


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
    ) -> None:
        self._realms = realms
        self._cache = cache
        self._algorithms = algorithms
        self._registry = make_registry(algorithms)
        self._claims = claims
        self._forbidden = forbidden_roles
        self._platform = platform_roles
        self._super_tenant = super_admin_tenant
        self._max_bytes = max_token_bytes
        self._now = wall_clock
        self._tokens = token_cache
        self._realm_registry = realm_registry

    async def verify(self, token: str) -> Identity:
        """The identity `token` proves; `TokenRejected` with the reason of the first failed check."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        tokens = self._tokens
        if tokens is not None:
            cached = tokens.get(digest)
            if type(cached) is Identity:
                return cached
            if type(cached) is CachedRejection:
                raise TokenRejected(Rejected(cached.reason, cached.detail), cached.facts, cached.realm, digest)
        parsed: ParsedToken | None = None
        realm: Realm | None = None
        try:
            parsed = parse_token(token, max_bytes=self._max_bytes)
            check_algorithm(parsed, self._algorithms)
            realm = self._realms.realm_from_issuer(parsed.claims.get("iss"))
            registry = self._realm_registry
            if registry is not None and not await registry.is_registered(realm):
                raise Rejected(Reason.UNKNOWN_REALM, "realm is not registered in the database (strict registry)")
            kid = parsed.kid
            if kid is None:
                raise Rejected(Reason.UNKNOWN_KID, "header kid is missing")
            key = self._cache.cached_key(realm, kid) or await self._cache.key_for(realm, kid)
            verify_signature(parsed, key, self._registry)
            check_claims(parsed.claims, self._claims, self._now())
            identity = identity_from_claims(parsed.claims, realm, self._forbidden)
            if identity.kind == KIND_API_KEY:
                check_not_expired(api_key_claim(parsed.claims), self._now())
            if identity.tenant_id != self._super_tenant and identity.allowed_roles & self._platform:
                # platform-wide roles only from the super-admin tenant's realms (see PLATFORM_ROLES)
                identity = dataclasses.replace(identity, allowed_roles=identity.allowed_roles - self._platform)
        except Rejected as exc:
            facts = TokenFacts.of(parsed)
            if tokens is not None:
                tokens.put_rejection(digest, CachedRejection(exc.reason, exc.detail, facts, realm))
            raise TokenRejected(exc, facts, realm, digest) from None
        if tokens is not None:
            tokens.put_identity(digest, identity)
        return identity

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
