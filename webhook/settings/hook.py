"""The hook's settings: Keycloak, trusted realms, token rules, limits, caches, JWKS, logs, serving.

Rules of this module: fields only, each read from the variable its `env(...)` names, with the rules
that tie two of these fields together as validators (a field sees the fields declared above it).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from webhook.core.realms import parse_realm_name
from webhook.settings.source import EnvironmentSettings
from webhook.settings.types import (
    Algorithms,
    BaseUrls,
    LogFormat,
    LogLevel,
    Names,
    OptionalRole,
    RealmNames,
    RealmSet,
    Roles,
    Text,
    base_url,
    env,
    within,
)


class HookSettings(EnvironmentSettings):
    """What the auth hook needs to verify a token and answer Hasura."""

    keycloak_url: Text = env(
        "KEYCLOAK_URL",
        "",
        "Base URL the service fetches realm keys from (internal URL). Required in serve mode.",
        "http://keycloak:8080",
    )
    issuer_urls: BaseUrls = env(
        "KEYCLOAK_ISSUER_URL",
        "",
        "Comma-separated public base URL(s) that appear in `iss` (what browsers use). Defaults to KEYCLOAK_URL.",
        "https://auth.example.org",
    )
    extra_realms: RealmSet = env(
        "TRUSTED_EXTRA_REALMS",
        "",
        (
            "Comma-separated realm names trusted besides the `tenant-<uuid>` and `tenant-<uuid>-event-<uuid>` "
            "patterns. Their tokens must carry `x-hasura-tenant-id`."
        ),
        "platform-admin",
    )
    prefetch_realms: RealmNames = env(
        "PREFETCH_REALMS",
        "",
        (
            "Comma-separated realms whose keys are loaded at start, kept refreshed and never evicted; "
            "`/readyz` is ready once they are all loaded."
        ),
        "tenant-90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    )
    algorithms: Algorithms = env(
        "ALLOWED_ALGORITHMS",
        "RS256",
        "Comma-separated JWS algorithms accepted. Asymmetric only: RS*, PS*, ES*, EdDSA (never none/HS*).",
        "RS256,ES256",
    )
    leeway: Annotated[int, within(0, 300)] = env(
        "CLOCK_LEEWAY_SECONDS", "30", "Clock skew tolerated on exp, nbf and iat.", "10"
    )
    audiences: Names = env(
        "ALLOWED_AUDIENCES",
        "",
        "Comma-separated audiences; when set, `aud` must contain one of them. Empty: no audience check.",
        "account",
    )
    azps: Names = env(
        "ALLOWED_AZP",
        "",
        "Comma-separated client ids; when set, `azp` must be one of them. Empty: no check.",
        "admin-portal,voting-portal",
    )
    anonymous_role: OptionalRole = env(
        "ANONYMOUS_ROLE",
        "",
        (
            "Role given to requests that carry no token at all. Empty: such requests get 401 missing_token. A "
            "bad token is always 401."
        ),
        "anonymous",
    )
    forbidden_roles: Roles = env(
        "FORBIDDEN_ROLES",
        "admin",
        (
            "Comma-separated roles the hook never grants even if a token lists them (a realm admin must not "
            "mint Hasura admins)."
        ),
        "admin",
    )
    platform_roles: Roles = env(
        "PLATFORM_ROLES",
        "platform-operator,tenant-create",
        (
            "Comma-separated roles granted only to tokens of SUPER_ADMIN_TENANT_ID's realms: a tenant's own "
            "realm admin can put any role in a token, so platform-wide roles must not come from them."
        ),
        "platform-operator,tenant-create",
    )
    max_token_bytes: Annotated[int, within(1024, 1048576)] = env(
        "MAX_TOKEN_BYTES", "16384", "Largest token accepted (Keycloak tokens are ~5 KB).", "16384"
    )
    max_body_bytes: Annotated[int, within(4096, 67108864)] = env(
        "MAX_BODY_BYTES",
        "1048576",
        (
            "POST-mode hook bodies up to this size are parsed whole; larger ones are scanned for their "
            "`headers` member only (at most this size, else 400). Also the largest action call body."
        ),
        "1048576",
    )
    token_cache_size: Annotated[int, within(0, 10_000_000)] = env(
        "TOKEN_CACHE_SIZE",
        "100000",
        "Verified tokens remembered (by SHA-256) so a repeated token skips verification; 0 disables.",
        "100000",
    )
    token_cache_rejections_size: Annotated[int, within(0, 10_000_000)] = env(
        "TOKEN_CACHE_REJECTIONS_SIZE",
        "10000",
        "Rejected tokens remembered (separate LRU, only reasons that cannot change); 0 disables.",
        "10000",
    )
    token_cache_ttl: Annotated[int, within(1, 86400)] = env(
        "TOKEN_CACHE_TTL_SECONDS",
        "300",
        "Longest time a verification outcome is reused (never past the token's exp).",
        "300",
    )
    jwks_ttl: Annotated[int, within(10, 86400)] = env(
        "JWKS_TTL_SECONDS", "600", "How long fetched keys are fresh before a background refresh.", "600"
    )
    jwks_min_refetch: Annotated[int, within(0, 3600)] = env(
        "JWKS_MIN_REFETCH_SECONDS",
        "10",
        "Least time between two fetches of one realm triggered by an unknown `kid` (single-flight in between).",
        "10",
    )
    jwks_retry: Annotated[int, within(0, 3600)] = env(
        "JWKS_RETRY_SECONDS", "2", "After a failed fetch, least time before the realm is fetched again.", "2"
    )
    jwks_max_stale: Annotated[int, within(0, 604800)] = env(
        "JWKS_MAX_STALE_SECONDS",
        "3600",
        "How long past the TTL keys are still used while Keycloak fails (stale-if-error).",
        "3600",
    )
    jwks_fetch_timeout: Annotated[int, within(1, 60)] = env(
        "JWKS_FETCH_TIMEOUT_SECONDS", "3", "Total time allowed for one JWKS fetch.", "3"
    )
    jwks_max_bytes: Annotated[int, within(1024, 16777216)] = env(
        "JWKS_MAX_BYTES", "262144", "Largest JWKS document read.", "262144"
    )
    jwks_negative_ttl: Annotated[int, within(0, 86400)] = env(
        "JWKS_NEGATIVE_TTL_SECONDS", "60", "How long a realm Keycloak says does not exist is remembered as such.", "60"
    )
    jwks_max_realms: Annotated[int, within(1, 1000000)] = env(
        "JWKS_MAX_REALMS",
        "1000",
        "Most realms held in the cache (least recently used evicted; prefetched realms are pinned).",
        "1000",
    )
    jwks_max_concurrent_fetches: Annotated[int, within(1, 1000)] = env(
        "JWKS_MAX_CONCURRENT_FETCHES",
        "8",
        "Most JWKS fetches in flight; a request that would need one more gets jwks_unavailable at once.",
        "8",
    )
    jwks_new_realm_fetch_rate: Annotated[int, within(1, 100000)] = env(
        "JWKS_NEW_REALM_FETCH_RATE",
        "100",
        (
            "Most fetches per second of realms without keys yet (first use, or said missing); above it such a "
            "request gets jwks_unavailable at once. Bounds tokens naming thousands of made-up realms."
        ),
        "100",
    )
    log_level: LogLevel = env("LOG_LEVEL", "info", "debug, info, warning or error.", "info")
    log_format: LogFormat = env("LOG_FORMAT", "json", "json (one object per line) or console.", "json")
    host: Text = env("HOST", "127.0.0.1", "Address `webhook serve` binds.", "0.0.0.0")
    port: Annotated[int, within(0, 65535)] = env("PORT", "8080", "Port `webhook serve` binds.", "8080")
    dev_mode: bool = Field(default=False, description="Set by `webhook dev` only (never read from the environment).")

    @field_validator("keycloak_url")
    @classmethod
    def _keycloak_url(cls, value: str) -> str:
        if not value:
            raise ValueError("required (the Keycloak base URL keys are fetched from)")
        return base_url(value)

    @field_validator("issuer_urls")
    @classmethod
    def _issuers_default_to_keycloak_url(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        keycloak_url = info.data.get("keycloak_url")
        return value or ((keycloak_url,) if keycloak_url else ())

    @field_validator("prefetch_realms")
    @classmethod
    def _prefetch_realms_trusted(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        extra = info.data.get("extra_realms", frozenset())
        for realm in value:
            if realm not in extra and parse_realm_name(realm) is None:
                raise ValueError(f"{realm!r} is neither a tenant/event realm nor in TRUSTED_EXTRA_REALMS")
        return value
