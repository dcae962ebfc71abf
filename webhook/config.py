"""Settings: read once from the environment at start, validated, frozen.

Rules of this module:
- Every variable the service reads is declared in `VARIABLES` (name, default, help); the README
  table and the `check-config` command are generated from it, and a test keeps them in sync.
- A bad value raises `ConfigError` naming the variable; the process stops with that message.
- Nothing here is a secret today; when one arrives it is wrapped in `Secret` so reprs hide it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final
from urllib.parse import urlsplit

from webhook.realms import REALM_NAME_RE, parse_realm_name

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable the service reads."""

    name: str
    default: str
    help: str
    example: str = ""


VARIABLES: Final[tuple[Variable, ...]] = (
    Variable(
        "KEYCLOAK_URL",
        "",
        "Base URL the service fetches realm keys from (internal URL). Required in serve mode.",
        "http://keycloak:8080",
    ),
    Variable(
        "KEYCLOAK_ISSUER_URL",
        "",
        "Comma-separated public base URL(s) that appear in `iss` "
        "(what browsers use). Defaults to KEYCLOAK_URL.",
        "https://auth.example.org",
    ),
    Variable(
        "TRUSTED_EXTRA_REALMS",
        "",
        "Comma-separated realm names trusted besides the "
        "`tenant-<uuid>` and `tenant-<uuid>-event-<uuid>` patterns. Their tokens must carry "
        "`x-hasura-tenant-id`.",
        "platform-admin",
    ),
    Variable(
        "PREFETCH_REALMS",
        "",
        "Comma-separated realms whose keys are loaded at start, kept "
        "refreshed and never evicted; `/readyz` is ready once they are all loaded.",
        "tenant-90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    ),
    Variable(
        "ALLOWED_ALGORITHMS",
        "RS256",
        "Comma-separated JWS algorithms accepted. Asymmetric only: RS*, PS*, ES*, EdDSA (never none/HS*).",
        "RS256,ES256",
    ),
    Variable("CLOCK_LEEWAY_SECONDS", "30", "Clock skew tolerated on exp, nbf and iat.", "10"),
    Variable(
        "ALLOWED_AUDIENCES",
        "",
        "Comma-separated audiences; when set, `aud` must contain one of them. Empty: no audience check.",
        "account",
    ),
    Variable(
        "ALLOWED_AZP",
        "",
        "Comma-separated client ids; when set, `azp` must be one of them. Empty: no check.",
        "admin-portal,voting-portal",
    ),
    Variable(
        "ANONYMOUS_ROLE",
        "",
        "Role given to requests that carry no token at all. Empty: "
        "such requests get 401 missing_token. A bad token is always 401.",
        "anonymous",
    ),
    Variable(
        "FORBIDDEN_ROLES",
        "admin",
        "Comma-separated roles the hook never grants even if a "
        "token lists them (a realm admin must not mint Hasura admins).",
        "admin",
    ),
    Variable("MAX_TOKEN_BYTES", "16384", "Largest token accepted (Keycloak tokens are ~5 KB).", "16384"),
    Variable("MAX_BODY_BYTES", "1048576", "Largest POST-mode hook body accepted (400 above).", "1048576"),
    Variable(
        "JWKS_TTL_SECONDS", "600", "How long fetched keys are fresh before a background refresh.", "600"
    ),
    Variable(
        "JWKS_MIN_REFETCH_SECONDS",
        "10",
        "Least time between two fetches of one realm "
        "triggered by an unknown `kid` (single-flight in between).",
        "10",
    ),
    Variable(
        "JWKS_RETRY_SECONDS", "2", "After a failed fetch, least time before the realm is fetched again.", "2"
    ),
    Variable(
        "JWKS_MAX_STALE_SECONDS",
        "3600",
        "How long past the TTL keys are still used while Keycloak fails (stale-if-error).",
        "3600",
    ),
    Variable("JWKS_FETCH_TIMEOUT_SECONDS", "3", "Total time allowed for one JWKS fetch.", "3"),
    Variable("JWKS_MAX_BYTES", "262144", "Largest JWKS document read.", "262144"),
    Variable(
        "JWKS_NEGATIVE_TTL_SECONDS",
        "60",
        "How long a realm Keycloak says does not exist is remembered as such.",
        "60",
    ),
    Variable(
        "JWKS_MAX_REALMS",
        "1000",
        "Most realms held in the cache (least recently used evicted; prefetched realms are pinned).",
        "1000",
    ),
    Variable(
        "JWKS_MAX_CONCURRENT_FETCHES",
        "8",
        "Most JWKS fetches in flight; a request that would need one more gets jwks_unavailable at once.",
        "8",
    ),
    Variable("LOG_LEVEL", "info", "debug, info, warning or error.", "info"),
    Variable("LOG_FORMAT", "json", "json (one object per line) or console.", "json"),
    Variable("HOST", "127.0.0.1", "Address `webhook serve` binds.", "0.0.0.0"),
    Variable("PORT", "8080", "Port `webhook serve` binds.", "8080"),
)
_DEFAULTS: Final = {v.name: v.default for v in VARIABLES}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))


def _base_url(name: str, value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: {value!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{name}: {value!r} must not carry a query, fragment or credentials")
    return value


def _int(name: str, value: str, *, low: int, high: int) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not an integer") from None
    if not low <= number <= high:
        raise ConfigError(f"{name}: {number} is outside {low}..{high}")
    return number


def _realm_names(name: str, value: str) -> tuple[str, ...]:
    realms = _csv(value)
    for realm in realms:
        if not REALM_NAME_RE.fullmatch(realm):
            raise ConfigError(f"{name}: {realm!r} is not a valid realm name")
    return realms


_ROLE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


@dataclass(frozen=True, slots=True)
class Settings:
    """The service's whole configuration. Build it with `Settings.from_environ`."""

    keycloak_url: str
    issuer_urls: tuple[str, ...]
    extra_realms: frozenset[str] = frozenset()
    prefetch_realms: tuple[str, ...] = ()
    algorithms: frozenset[str] = frozenset({"RS256"})
    leeway: int = 30
    audiences: frozenset[str] = frozenset()
    azps: frozenset[str] = frozenset()
    anonymous_role: str | None = None
    forbidden_roles: frozenset[str] = frozenset({"admin"})
    max_token_bytes: int = 16384
    max_body_bytes: int = 1048576
    jwks_ttl: int = 600
    jwks_min_refetch: int = 10
    jwks_retry: int = 2
    jwks_max_stale: int = 3600
    jwks_fetch_timeout: float = 3.0
    jwks_max_bytes: int = 262144
    jwks_negative_ttl: int = 60
    jwks_max_realms: int = 1000
    jwks_max_concurrent_fetches: int = 8
    log_level: str = "info"
    log_format: str = "json"
    host: str = "127.0.0.1"
    port: int = 8080
    dev_mode: bool = field(default=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, require_keycloak: bool = True) -> Settings:
        """Read and validate every variable in `VARIABLES`; raise `ConfigError` naming the culprit."""

        def get(name: str) -> str:
            return environ.get(name, _DEFAULTS[name])

        keycloak_raw = get("KEYCLOAK_URL").strip()
        if not keycloak_raw:
            if require_keycloak:
                raise ConfigError("KEYCLOAK_URL: required (the Keycloak base URL keys are fetched from)")
            keycloak_raw = "http://127.0.0.1:8090"
        keycloak_url = _base_url("KEYCLOAK_URL", keycloak_raw)
        issuers = tuple(_base_url("KEYCLOAK_ISSUER_URL", v) for v in _csv(get("KEYCLOAK_ISSUER_URL")))

        algorithms = frozenset(_csv(get("ALLOWED_ALGORITHMS")))
        if not algorithms:
            raise ConfigError("ALLOWED_ALGORITHMS: at least one algorithm is required")
        unsafe = sorted(algorithms - ASYMMETRIC_ALGORITHMS)
        if unsafe:
            raise ConfigError(
                f"ALLOWED_ALGORITHMS: {', '.join(unsafe)} not allowed; "
                f"choose from {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )

        extra = _realm_names("TRUSTED_EXTRA_REALMS", get("TRUSTED_EXTRA_REALMS"))
        prefetch = _realm_names("PREFETCH_REALMS", get("PREFETCH_REALMS"))
        for realm in prefetch:
            if realm not in extra and parse_realm_name(realm) is None:
                raise ConfigError(
                    f"PREFETCH_REALMS: {realm!r} is neither a tenant/event realm nor in TRUSTED_EXTRA_REALMS"
                )

        roles = {}
        for name in ("ANONYMOUS_ROLE", "FORBIDDEN_ROLES"):
            for role in _csv(get(name)):
                if not _ROLE_RE.fullmatch(role):
                    raise ConfigError(f"{name}: {role!r} is not a valid role name")
            roles[name] = _csv(get(name))
        if len(roles["ANONYMOUS_ROLE"]) > 1:
            raise ConfigError("ANONYMOUS_ROLE: a single role name is expected")

        log_level = get("LOG_LEVEL").strip().lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"LOG_LEVEL: {log_level!r} is not one of debug, info, warning, error")
        log_format = get("LOG_FORMAT").strip().lower()
        if log_format not in ("json", "console"):
            raise ConfigError(f"LOG_FORMAT: {log_format!r} is not json or console")

        return cls(
            keycloak_url=keycloak_url,
            issuer_urls=issuers or (keycloak_url,),
            extra_realms=frozenset(extra),
            prefetch_realms=prefetch,
            algorithms=algorithms,
            leeway=_int("CLOCK_LEEWAY_SECONDS", get("CLOCK_LEEWAY_SECONDS"), low=0, high=300),
            audiences=frozenset(_csv(get("ALLOWED_AUDIENCES"))),
            azps=frozenset(_csv(get("ALLOWED_AZP"))),
            anonymous_role=(roles["ANONYMOUS_ROLE"] or (None,))[0],
            forbidden_roles=frozenset(roles["FORBIDDEN_ROLES"]),
            max_token_bytes=_int("MAX_TOKEN_BYTES", get("MAX_TOKEN_BYTES"), low=1024, high=1048576),
            max_body_bytes=_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES"), low=4096, high=67108864),
            jwks_ttl=_int("JWKS_TTL_SECONDS", get("JWKS_TTL_SECONDS"), low=10, high=86400),
            jwks_min_refetch=_int(
                "JWKS_MIN_REFETCH_SECONDS", get("JWKS_MIN_REFETCH_SECONDS"), low=0, high=3600
            ),
            jwks_retry=_int("JWKS_RETRY_SECONDS", get("JWKS_RETRY_SECONDS"), low=0, high=3600),
            jwks_max_stale=_int("JWKS_MAX_STALE_SECONDS", get("JWKS_MAX_STALE_SECONDS"), low=0, high=604800),
            jwks_fetch_timeout=_int(
                "JWKS_FETCH_TIMEOUT_SECONDS", get("JWKS_FETCH_TIMEOUT_SECONDS"), low=1, high=60
            ),
            jwks_max_bytes=_int("JWKS_MAX_BYTES", get("JWKS_MAX_BYTES"), low=1024, high=16777216),
            jwks_negative_ttl=_int(
                "JWKS_NEGATIVE_TTL_SECONDS", get("JWKS_NEGATIVE_TTL_SECONDS"), low=0, high=86400
            ),
            jwks_max_realms=_int("JWKS_MAX_REALMS", get("JWKS_MAX_REALMS"), low=1, high=1000000),
            jwks_max_concurrent_fetches=_int(
                "JWKS_MAX_CONCURRENT_FETCHES", get("JWKS_MAX_CONCURRENT_FETCHES"), low=1, high=1000
            ),
            log_level=log_level,
            log_format=log_format,
            host=get("HOST").strip(),
            port=_int("PORT", get("PORT"), low=0, high=65535),
        )

    def describe(self) -> dict[str, object]:
        """A printable view of the settings (no secrets are held today)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out
