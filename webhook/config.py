"""Settings: read once from the environment at start, validated, frozen.

Rules of this module:
- Every variable the service reads is declared in `VARIABLES` (name, default, help); the README
  table and the `check-config` command are generated from it, and a test keeps them in sync.
- A bad value raises `ConfigError` naming the variable; the process stops with that message.
- Secrets (DATABASE_URL, which may hold a password) are wrapped in `Secret`: reprs and
  `describe()` show the masked form only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Final, TypedDict
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from webhook.core.realms import REALM_NAME_RE, parse_realm_name

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
        "Comma-separated public base URL(s) that appear in `iss` (what browsers use). Defaults to KEYCLOAK_URL.",
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
    Variable(
        "PLATFORM_ROLES",
        "platform-operator,tenant-create",
        "Comma-separated roles granted only to tokens of SUPER_ADMIN_TENANT_ID's realms: a tenant's own "
        "realm admin can put any role in a token, so platform-wide roles must not come from them.",
        "platform-operator,tenant-create",
    ),
    Variable("MAX_TOKEN_BYTES", "16384", "Largest token accepted (Keycloak tokens are ~5 KB).", "16384"),
    Variable(
        "MAX_BODY_BYTES",
        "1048576",
        "POST-mode hook bodies up to this size are parsed whole; larger ones are scanned for their `headers` "
        "member only (at most this size, else 400). Also the largest action call body.",
        "1048576",
    ),
    Variable(
        "TOKEN_CACHE_SIZE",
        "100000",
        "Verified tokens remembered (by SHA-256) so a repeated token skips verification; 0 disables.",
        "100000",
    ),
    Variable(
        "TOKEN_CACHE_REJECTIONS_SIZE",
        "10000",
        "Rejected tokens remembered (separate LRU, only reasons that cannot change); 0 disables.",
        "10000",
    ),
    Variable(
        "TOKEN_CACHE_TTL_SECONDS",
        "300",
        "Longest time a verification outcome is reused (never past the token's exp).",
        "300",
    ),
    Variable("JWKS_TTL_SECONDS", "600", "How long fetched keys are fresh before a background refresh.", "600"),
    Variable(
        "JWKS_MIN_REFETCH_SECONDS",
        "10",
        "Least time between two fetches of one realm triggered by an unknown `kid` (single-flight in between).",
        "10",
    ),
    Variable("JWKS_RETRY_SECONDS", "2", "After a failed fetch, least time before the realm is fetched again.", "2"),
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
    Variable(
        "JWKS_NEW_REALM_FETCH_RATE",
        "100",
        "Most fetches per second of realms without keys yet (first use, or said missing); above it "
        "such a request gets jwks_unavailable at once. Bounds tokens naming thousands of made-up realms.",
        "100",
    ),
    Variable("LOG_LEVEL", "info", "debug, info, warning or error.", "info"),
    Variable("LOG_FORMAT", "json", "json (one object per line) or console.", "json"),
    Variable("HOST", "127.0.0.1", "Address `webhook serve` binds.", "0.0.0.0"),
    Variable("PORT", "8080", "Port `webhook serve` binds.", "8080"),
    Variable(
        "DATABASE_URL",
        "sqlite+aiosqlite:///var/webhook.sqlite3",
        "SQLAlchemy URL of the database (audit, tenants, events, provisioning jobs): "
        "`sqlite+aiosqlite:///<file>` (dev; the directory is created) or "
        "`postgresql+asyncpg://user:password@host/db` (`postgres://` and `postgresql://` "
        "mean asyncpg). The password is masked in every output.",
        "postgresql+asyncpg://webhook:secret@postgres:5432/webhook",
    ),
    Variable(
        "DATABASE_SCHEMA",
        "",
        "PostgreSQL schema holding the service's tables (created by the migrations if missing). "
        "Empty: the connection's default (`public`). Ignored on SQLite.",
        "webhook",
    ),
    Variable(
        "DATABASE_AUTO_MIGRATE",
        "auto",
        "Upgrade the database to the latest migration when the service starts (in the background: "
        "the hook never waits for it). auto: yes on SQLite, no on PostgreSQL (run `webhook db upgrade`).",
        "false",
    ),
    Variable(
        "AUDIT_QUEUE_SIZE",
        "10000",
        "Distinct audit keys (a verified token, or a client/realm/bucket) folded in memory for the writer; "
        "past it, records fold into their bucket's overflow row (counted, never dropped).",
        "10000",
    ),
    Variable("AUDIT_BATCH_SIZE", "500", "Most distinct audit rows written in one transaction.", "500"),
    Variable(
        "AUDIT_FLUSH_INTERVAL_SECONDS",
        "1",
        "Longest time a rejection waits in the queue before its batch is written.",
        "0.5",
    ),
    Variable(
        "AUDIT_RETRY_MAX_SECONDS",
        "30",
        "Cap of the exponential backoff between attempts while the audit database fails.",
        "30",
    ),
    Variable(
        "AUDIT_RETENTION_DAYS",
        "90",
        "Audit rows whose last_seen is older than this are pruned (periodically and by "
        "`webhook audit prune`). 0: never prune automatically.",
        "30",
    ),
    Variable("AUDIT_PRUNE_INTERVAL_SECONDS", "3600", "Time between two periodic prunes of the audit table.", "3600"),
    Variable(
        "AUDIT_SHUTDOWN_DEADLINE_SECONDS",
        "5",
        "At shutdown, how long the audit writer may take to flush its queue; what is left is dropped and counted.",
        "5",
    ),
    # -- audit durability and bounds (issue 13) --------------------------------------------------
    Variable(
        "AUDIT_JOURNAL_DIR",
        "var/audit-journal",
        "Local directory where audit rows wait while the database cannot take them (one `slot-<n>` "
        "per process, fsync'd per batch, replayed in order when the database is back and at the next "
        "start). Empty: no journal (rows wait in memory, up to AUDIT_QUEUE_SIZE, and die with the process).",
        "/var/lib/webhook/audit/record-journal",
    ),
    Variable(
        "AUDIT_JOURNAL_MAX_BYTES",
        "67108864",
        "Most bytes the audit journal may hold (64 MiB; a folded row is ~0.6 KB); past it, rows are "
        'dropped and counted (`webhook_audit_dropped_total{cause="journal_full"}`).',
        "67108864",
    ),
    Variable(
        "AUDIT_FOLD_BUCKET_SECONDS",
        "60",
        "Width of the time bucket unverifiable rejections (no valid signature) fold into: one row per "
        "reason, source, realm and client IP per bucket, with occurrences and distinct tokens.",
        "60",
    ),
    Variable(
        "AUDIT_MAX_ROWS_PER_BUCKET",
        "600",
        "Most distinct audit rows written per bucket (both kinds); past it, records fold into one "
        "overflow row per reason and source per bucket (`webhook_audit_overflow_total`).",
        "600",
    ),
    # -- actions and realm provisioning (issue 5) ----------------------------------------------
    Variable(
        "ACTIONS_SECRET",
        "",
        "Shared secret Hasura sends in `X-Actions-Secret` on every action call (actions.yaml "
        "`value_from_env: ACTIONS_SECRET`), compared in constant time; at least 16 characters. "
        "Empty: every action call is answered 401.",
        "5f0c…(32 random characters)",
    ),
    Variable(
        "SUPER_ADMIN_TENANT_ID",
        "",
        "Tenant (UUID) whose own realm's tokens may create tenants (`insertTenant`), create events for "
        "any tenant and get `PLATFORM_ROLES` (not its event realms' tokens). "
        "Empty: nobody may.",
        "90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    ),
    Variable(
        "KEYCLOAK_ADMIN_REALM",
        "master",
        "Realm of the service's own admin client (client-credentials grant) that creates realms.",
        "master",
    ),
    Variable(
        "KEYCLOAK_ADMIN_CLIENT_ID",
        "",
        "Client id of that confidential admin client (service account allowed to create and update realms). "
        "Required to provision realms.",
        "election-webhook",
    ),
    Variable(
        "KEYCLOAK_ADMIN_CLIENT_SECRET",
        "",
        "Secret of the admin client (masked in every output).",
        "(from Keycloak: Clients > election-webhook > Credentials)",
    ),
    Variable(
        "KEYCLOAK_ADMIN_TIMEOUT_SECONDS",
        "30",
        "Total time allowed for one Keycloak admin API call (creating a realm takes seconds).",
        "30",
    ),
    Variable(
        "PROVISIONING_WORKER",
        "auto",
        "Run the realm provisioning worker inside the service. auto: yes when ACTIONS_SECRET and the admin "
        "client are set. `webhook worker` runs it on its own.",
        "false",
    ),
    Variable(
        "PROVISIONING_POLL_SECONDS",
        "5",
        "Time between two looks for due provisioning jobs (an action wakes the in-process worker at once).",
        "5",
    ),
    Variable(
        "PROVISIONING_MAX_ATTEMPTS",
        "10",
        "Attempts before a provisioning job is marked failed (`webhook provisioning retry` re-queues it).",
        "10",
    ),
    Variable(
        "PROVISIONING_BACKOFF_MAX_SECONDS",
        "300",
        "Cap of the exponential backoff between two attempts of one provisioning job.",
        "300",
    ),
    Variable(
        "PROVISIONING_LEASE_SECONDS",
        "120",
        "How long a claimed job belongs to its worker; the job of a worker that died is claimable again after it.",
        "120",
    ),
    Variable(
        "VOTING_PORTAL_URL",
        "http://127.0.0.1:3000",
        "Voting portal base URL written into the `voting-portal` client of new realms.",
        "https://vote.example.org",
    ),
    Variable(
        "ADMIN_PORTAL_URL",
        "http://127.0.0.1:3002",
        "Admin portal base URL written into the `admin-portal` client of new realms.",
        "https://admin.example.org",
    ),
    Variable(
        "STRICT_REALM_REGISTRY",
        "false",
        "true: a tenant or event realm is trusted only if its tenant (and event) exist in the database, "
        "checked before any JWKS fetch (else `unknown_realm`). Realms named in the configuration stay trusted.",
        "true",
    ),
    Variable("REALM_CACHE_SECONDS", "300", "Strict realm registry: how long a registered realm is remembered.", "300"),
    Variable(
        "REALM_CACHE_NEGATIVE_SECONDS",
        "10",
        "Strict realm registry: how long a realm found unregistered is remembered.",
        "10",
    ),
    Variable(
        "REALM_CACHE_SIZE",
        "10000",
        "Strict realm registry: most realms remembered (least recently used evicted).",
        "10000",
    ),
    # ---- issue 13 hardening: bounds of the strict registry's database lookups
    Variable(
        "REALM_LOOKUP_RATE",
        "50",
        "Strict realm registry: database lookups of realms not cached, per second (a global bucket); "
        "above it a realm never seen registered is refused `unknown_realm` at once.",
        "50",
    ),
    Variable(
        "REALM_LOOKUP_MAX_CONCURRENT",
        "4",
        "Strict realm registry: most database lookups in flight; one more is refused `unknown_realm` at "
        "once (a realm seen registered before stays registered).",
        "4",
    ),
    # -- session revocation: OIDC back-channel logout (issue 15) --------------------------------
    Variable(
        "BACKCHANNEL_LOGOUT_URL",
        "",
        "URL Keycloak reaches `POST /keycloak/backchannel-logout` on; written into the portal clients of "
        "new and provisioned realms (`backchannel.logout.url`, session required). Empty: not written.",
        "http://webhook:8080/keycloak/backchannel-logout",
    ),
    Variable(
        "REVOCATIONS",
        "auto",
        "Honour back-channel logouts and `webhook sessions revoke` (needs the database). auto: on when "
        "BACKCHANNEL_LOGOUT_URL is set.",
        "true",
    ),
    Variable(
        "BACKCHANNEL_LOGOUT_AUDIENCES",
        "admin-portal,voting-portal",
        "Comma-separated client ids a logout token's `aud` must name one of. Empty: any audience.",
        "admin-portal,voting-portal",
    ),
    Variable(
        "REVOCATION_MAX_TOKEN_LIFETIME_SECONDS",
        "3600",
        "Longest access-token lifetime of any trusted realm; a revocation is kept this long plus "
        "CLOCK_LEEWAY_SECONDS, after which no token it covers can still be valid.",
        "300",
    ),
    Variable(
        "REVOCATION_MAX_ENTRIES",
        "1000000",
        "Most active revocations held in memory; past it the oldest is dropped and the process reports "
        "itself uncertain until that revocation would have expired.",
        "1000000",
    ),
    Variable(
        "REVOCATION_MAX_LAG_SECONDS",
        "5",
        "A process whose link to the database (LISTEN connection) has been down longer than this is "
        "uncertain: `/readyz` and `webhook_revocation_uncertain` say so.",
        "5",
    ),
    Variable(
        "REVOCATION_FAIL_CLOSED",
        "true",
        "While uncertain, refuse (session_revoked) every token issued before the link was lost. false: "
        "keep accepting them (a logout during the outage takes effect when the link is back).",
        "true",
    ),
    # -- API keys (issue 16) -----------------------------------------------------------------------
    Variable(
        "API_KEY_WRITE_ROLE",
        "api-key-write",
        "Role a tenant admin's token needs to create, rotate and revoke the tenant's API keys.",
        "api-key-write",
    ),
    Variable(
        "API_KEY_READ_ROLE",
        "api-key-read",
        "Role a tenant admin's token needs to list the tenant's API keys (`apiKeys`; the write role also may).",
        "api-key-read",
    ),
)
_DEFAULTS: Final = {v.name: v.default for v in VARIABLES}


def _one_role(name: str, value: str) -> str:
    """A single role name (API key permissions)."""
    role = value.strip()
    if not _ROLE_RE.fullmatch(role):
        raise ConfigError(f"{name}: {role!r} is not a valid role name")
    return role


def _csv(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))


def _base_url(name: str, value: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}: {value!r} is not an http(s) URL")
    if "?" in value or "#" in value or parts.username or parts.password:
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
_SCHEMA_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_DRIVERS: Final = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class Secret:
    """A value never shown as is: `str`/`repr` give `shown` (a masked form); `reveal()` the value.

    Not a dataclass, so `dataclasses.asdict(settings)` cannot unfold it either.
    """

    __slots__ = ("_shown", "_value")

    def __init__(self, value: str, shown: str = "**********") -> None:
        self._value = value
        self._shown = shown

    def reveal(self) -> str:
        """The secret value itself, for the one place that needs it."""
        return self._value

    def __str__(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"Secret({self._shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _float(name: str, value: str, *, low: float, high: float) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a number") from None
    if not low <= number <= high:  # also refuses nan
        raise ConfigError(f"{name}: {number} is outside {low:g}..{high:g}")
    return number


def _database_url(name: str, value: str) -> Secret:
    """The URL with its driver made explicit (asyncpg or aiosqlite), shown with passwords masked."""
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ConfigError(
            f"{name}: not a database URL (expected postgresql+asyncpg:// or sqlite+aiosqlite://)"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            f"{name}: driver {url.drivername!r} not supported; use postgresql+asyncpg or sqlite+aiosqlite"
        )
    url = url.set(drivername=driver)
    hidden = {k: "redacted" for k in url.query if "pass" in k.lower() or "secret" in k.lower()}
    shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return Secret(url.render_as_string(hide_password=False), shown)


def _auto_migrate(name: str, value: str, url: Secret) -> bool:
    choice = value.strip().lower()
    if choice == "auto":
        return url.reveal().startswith("sqlite")
    if choice in ("true", "1", "yes", "on"):
        return True
    if choice in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{name}: {value!r} is not auto, true or false")


def _bool(name: str, value: str) -> bool:
    choice = value.strip().lower()
    if choice in ("true", "1", "yes", "on"):
        return True
    if choice in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: {value!r} is not true or false")


_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MIN_ACTIONS_SECRET_CHARS: Final = 16


def _uuid_or_none(name: str, value: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    if not _UUID_RE.fullmatch(text):
        raise ConfigError(f"{name}: {value!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text


def _secret_or_none(name: str, value: str, *, min_chars: int = 1) -> Secret | None:
    if not value:
        return None
    if value != value.strip():
        raise ConfigError(f"{name}: must not start or end with whitespace")
    if len(value) < min_chars:
        raise ConfigError(f"{name}: at least {min_chars} characters are required")
    return Secret(value)


@dataclass(frozen=True, slots=True)
class _Provisioning:
    """The admin-client and worker settings, validated together (they depend on each other)."""

    admin_realm: str
    admin_client_id: str
    admin_client_secret: Secret | None
    worker: bool


def _provisioning(get: Callable[[str], str], actions_secret: Secret | None) -> _Provisioning:
    realm = get("KEYCLOAK_ADMIN_REALM").strip()
    if not REALM_NAME_RE.fullmatch(realm):
        raise ConfigError(f"KEYCLOAK_ADMIN_REALM: {realm!r} is not a valid realm name")
    client_id = get("KEYCLOAK_ADMIN_CLIENT_ID").strip()
    secret = _secret_or_none("KEYCLOAK_ADMIN_CLIENT_SECRET", get("KEYCLOAK_ADMIN_CLIENT_SECRET"))
    if bool(client_id) != (secret is not None):
        raise ConfigError(
            "KEYCLOAK_ADMIN_CLIENT_ID: set it together with KEYCLOAK_ADMIN_CLIENT_SECRET (both or neither)"
        )
    choice = get("PROVISIONING_WORKER").strip().lower()
    if choice == "auto":
        worker = actions_secret is not None and secret is not None
    else:
        worker = _bool("PROVISIONING_WORKER", choice)
        if worker and secret is None:
            raise ConfigError("PROVISIONING_WORKER: needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
    return _Provisioning(realm, client_id, secret, worker)


def _schema(name: str, value: str) -> str | None:
    schema = value.strip()
    if not schema:
        return None
    if not _SCHEMA_RE.fullmatch(schema):
        raise ConfigError(f"{name}: {schema!r} is not a lowercase SQL identifier ([a-z_][a-z0-9_]*, <= 63)")
    return schema


class _RevocationArgs(TypedDict):
    backchannel_logout_url: str | None
    revocations: bool
    backchannel_logout_audiences: frozenset[str]
    revocation_max_token_lifetime: int
    revocation_max_entries: int
    revocation_max_lag: float
    revocation_fail_closed: bool


def _revocation(get: Callable[[str], str]) -> _RevocationArgs:
    """The session revocation settings (issue 15), as `Settings` keyword arguments."""
    url_raw = get("BACKCHANNEL_LOGOUT_URL").strip()
    url = None
    if url_raw:
        url = _base_url("BACKCHANNEL_LOGOUT_URL", url_raw)
    choice = get("REVOCATIONS").strip().lower()
    enabled = url is not None if choice == "auto" else _bool("REVOCATIONS", choice)
    audiences = _csv(get("BACKCHANNEL_LOGOUT_AUDIENCES"))
    for audience in audiences:
        if not _ROLE_RE.fullmatch(audience):
            raise ConfigError(f"BACKCHANNEL_LOGOUT_AUDIENCES: {audience!r} is not a valid client id")
    return {
        "backchannel_logout_url": url,
        "revocations": enabled,
        "backchannel_logout_audiences": frozenset(audiences),
        "revocation_max_token_lifetime": _int(
            "REVOCATION_MAX_TOKEN_LIFETIME_SECONDS", get("REVOCATION_MAX_TOKEN_LIFETIME_SECONDS"), low=1, high=2_592_000
        ),
        "revocation_max_entries": _int(
            "REVOCATION_MAX_ENTRIES", get("REVOCATION_MAX_ENTRIES"), low=1, high=100_000_000
        ),
        "revocation_max_lag": _float(
            "REVOCATION_MAX_LAG_SECONDS", get("REVOCATION_MAX_LAG_SECONDS"), low=0.5, high=3600
        ),
        "revocation_fail_closed": _bool("REVOCATION_FAIL_CLOSED", get("REVOCATION_FAIL_CLOSED")),
    }


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
    platform_roles: frozenset[str] = frozenset({"platform-operator", "tenant-create"})
    max_token_bytes: int = 16384
    max_body_bytes: int = 1048576
    token_cache_size: int = 100000
    token_cache_rejections_size: int = 10000
    token_cache_ttl: int = 300
    jwks_ttl: int = 600
    jwks_min_refetch: int = 10
    jwks_retry: int = 2
    jwks_max_stale: int = 3600
    jwks_fetch_timeout: float = 3.0
    jwks_max_bytes: int = 262144
    jwks_negative_ttl: int = 60
    jwks_max_realms: int = 1000
    jwks_max_concurrent_fetches: int = 8
    jwks_new_realm_fetch_rate: int = 100
    log_level: str = "info"
    log_format: str = "json"
    host: str = "127.0.0.1"
    port: int = 8080
    dev_mode: bool = field(default=False)
    database_url: Secret = field(
        default=Secret("sqlite+aiosqlite:///var/webhook.sqlite3", "sqlite+aiosqlite:///var/webhook.sqlite3")
    )
    database_schema: str | None = None
    database_auto_migrate: bool = True
    audit_queue_size: int = 10000
    audit_batch_size: int = 500
    audit_flush_interval: float = 1.0
    audit_retry_max: float = 30.0
    audit_retention_days: int = 90
    audit_prune_interval: float = 3600.0
    audit_shutdown_deadline: float = 5.0
    audit_journal_dir: str = "var/audit-journal"
    audit_journal_max_bytes: int = 64 << 20
    audit_fold_bucket_seconds: int = 60
    audit_max_rows_per_bucket: int = 600
    actions_secret: Secret | None = None
    super_admin_tenant_id: str | None = None
    keycloak_admin_realm: str = "master"
    keycloak_admin_client_id: str = ""
    keycloak_admin_client_secret: Secret | None = None
    keycloak_admin_timeout: float = 30.0
    provisioning_worker: bool = False
    provisioning_poll: float = 5.0
    provisioning_max_attempts: int = 10
    provisioning_backoff_max: float = 300.0
    provisioning_lease: float = 120.0
    voting_portal_url: str = "http://127.0.0.1:3000"
    admin_portal_url: str = "http://127.0.0.1:3002"
    strict_realm_registry: bool = False
    realm_cache_ttl: float = 300.0
    realm_cache_negative_ttl: float = 10.0
    realm_cache_size: int = 10000
    # ---- issue 13 hardening
    realm_lookup_rate: float = 50.0
    realm_lookup_max_concurrent: int = 4
    # -- session revocation (issue 15)
    backchannel_logout_url: str | None = None
    revocations: bool = False
    backchannel_logout_audiences: frozenset[str] = frozenset({"admin-portal", "voting-portal"})
    revocation_max_token_lifetime: int = 3600
    revocation_max_entries: int = 1_000_000
    revocation_max_lag: float = 5.0
    revocation_fail_closed: bool = True
    # -- API keys (issue 16)
    api_key_write_role: str = "api-key-write"
    api_key_read_role: str = "api-key-read"

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
        for name in ("ANONYMOUS_ROLE", "FORBIDDEN_ROLES", "PLATFORM_ROLES"):
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

        database_url = _database_url("DATABASE_URL", get("DATABASE_URL"))
        actions_secret = _secret_or_none("ACTIONS_SECRET", get("ACTIONS_SECRET"), min_chars=MIN_ACTIONS_SECRET_CHARS)
        provisioning = _provisioning(get, actions_secret)

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
            platform_roles=frozenset(roles["PLATFORM_ROLES"]),
            max_token_bytes=_int("MAX_TOKEN_BYTES", get("MAX_TOKEN_BYTES"), low=1024, high=1048576),
            max_body_bytes=_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES"), low=4096, high=67108864),
            token_cache_size=_int("TOKEN_CACHE_SIZE", get("TOKEN_CACHE_SIZE"), low=0, high=10_000_000),
            token_cache_rejections_size=_int(
                "TOKEN_CACHE_REJECTIONS_SIZE", get("TOKEN_CACHE_REJECTIONS_SIZE"), low=0, high=10_000_000
            ),
            token_cache_ttl=_int("TOKEN_CACHE_TTL_SECONDS", get("TOKEN_CACHE_TTL_SECONDS"), low=1, high=86400),
            jwks_ttl=_int("JWKS_TTL_SECONDS", get("JWKS_TTL_SECONDS"), low=10, high=86400),
            jwks_min_refetch=_int("JWKS_MIN_REFETCH_SECONDS", get("JWKS_MIN_REFETCH_SECONDS"), low=0, high=3600),
            jwks_retry=_int("JWKS_RETRY_SECONDS", get("JWKS_RETRY_SECONDS"), low=0, high=3600),
            jwks_max_stale=_int("JWKS_MAX_STALE_SECONDS", get("JWKS_MAX_STALE_SECONDS"), low=0, high=604800),
            jwks_fetch_timeout=_int("JWKS_FETCH_TIMEOUT_SECONDS", get("JWKS_FETCH_TIMEOUT_SECONDS"), low=1, high=60),
            jwks_max_bytes=_int("JWKS_MAX_BYTES", get("JWKS_MAX_BYTES"), low=1024, high=16777216),
            jwks_negative_ttl=_int("JWKS_NEGATIVE_TTL_SECONDS", get("JWKS_NEGATIVE_TTL_SECONDS"), low=0, high=86400),
            jwks_max_realms=_int("JWKS_MAX_REALMS", get("JWKS_MAX_REALMS"), low=1, high=1000000),
            jwks_max_concurrent_fetches=_int(
                "JWKS_MAX_CONCURRENT_FETCHES", get("JWKS_MAX_CONCURRENT_FETCHES"), low=1, high=1000
            ),
            jwks_new_realm_fetch_rate=_int(
                "JWKS_NEW_REALM_FETCH_RATE", get("JWKS_NEW_REALM_FETCH_RATE"), low=1, high=100000
            ),
            log_level=log_level,
            log_format=log_format,
            host=get("HOST").strip(),
            port=_int("PORT", get("PORT"), low=0, high=65535),
            database_url=database_url,
            database_schema=_schema("DATABASE_SCHEMA", get("DATABASE_SCHEMA")),
            database_auto_migrate=_auto_migrate("DATABASE_AUTO_MIGRATE", get("DATABASE_AUTO_MIGRATE"), database_url),
            audit_queue_size=_int("AUDIT_QUEUE_SIZE", get("AUDIT_QUEUE_SIZE"), low=1, high=10_000_000),
            audit_batch_size=_int("AUDIT_BATCH_SIZE", get("AUDIT_BATCH_SIZE"), low=1, high=100_000),
            audit_flush_interval=_float(
                "AUDIT_FLUSH_INTERVAL_SECONDS", get("AUDIT_FLUSH_INTERVAL_SECONDS"), low=0.001, high=3600
            ),
            audit_retry_max=_float("AUDIT_RETRY_MAX_SECONDS", get("AUDIT_RETRY_MAX_SECONDS"), low=0.01, high=3600),
            audit_retention_days=_int("AUDIT_RETENTION_DAYS", get("AUDIT_RETENTION_DAYS"), low=0, high=36500),
            audit_prune_interval=_float(
                "AUDIT_PRUNE_INTERVAL_SECONDS", get("AUDIT_PRUNE_INTERVAL_SECONDS"), low=1, high=31_536_000
            ),
            audit_shutdown_deadline=_float(
                "AUDIT_SHUTDOWN_DEADLINE_SECONDS", get("AUDIT_SHUTDOWN_DEADLINE_SECONDS"), low=0, high=3600
            ),
            audit_journal_dir=get("AUDIT_JOURNAL_DIR").strip(),
            audit_journal_max_bytes=_int(
                "AUDIT_JOURNAL_MAX_BYTES", get("AUDIT_JOURNAL_MAX_BYTES"), low=65536, high=1 << 40
            ),
            audit_fold_bucket_seconds=_int(
                "AUDIT_FOLD_BUCKET_SECONDS", get("AUDIT_FOLD_BUCKET_SECONDS"), low=1, high=86400
            ),
            audit_max_rows_per_bucket=_int(
                "AUDIT_MAX_ROWS_PER_BUCKET", get("AUDIT_MAX_ROWS_PER_BUCKET"), low=1, high=10_000_000
            ),
            actions_secret=actions_secret,
            super_admin_tenant_id=_uuid_or_none("SUPER_ADMIN_TENANT_ID", get("SUPER_ADMIN_TENANT_ID")),
            keycloak_admin_realm=provisioning.admin_realm,
            keycloak_admin_client_id=provisioning.admin_client_id,
            keycloak_admin_client_secret=provisioning.admin_client_secret,
            keycloak_admin_timeout=_float(
                "KEYCLOAK_ADMIN_TIMEOUT_SECONDS", get("KEYCLOAK_ADMIN_TIMEOUT_SECONDS"), low=0.1, high=600
            ),
            provisioning_worker=provisioning.worker,
            provisioning_poll=_float(
                "PROVISIONING_POLL_SECONDS", get("PROVISIONING_POLL_SECONDS"), low=0.01, high=3600
            ),
            provisioning_max_attempts=_int(
                "PROVISIONING_MAX_ATTEMPTS", get("PROVISIONING_MAX_ATTEMPTS"), low=1, high=1000
            ),
            provisioning_backoff_max=_float(
                "PROVISIONING_BACKOFF_MAX_SECONDS", get("PROVISIONING_BACKOFF_MAX_SECONDS"), low=0.01, high=86400
            ),
            provisioning_lease=_float(
                "PROVISIONING_LEASE_SECONDS", get("PROVISIONING_LEASE_SECONDS"), low=1, high=86400
            ),
            voting_portal_url=_base_url("VOTING_PORTAL_URL", get("VOTING_PORTAL_URL")),
            admin_portal_url=_base_url("ADMIN_PORTAL_URL", get("ADMIN_PORTAL_URL")),
            strict_realm_registry=_bool("STRICT_REALM_REGISTRY", get("STRICT_REALM_REGISTRY")),
            realm_cache_ttl=_float("REALM_CACHE_SECONDS", get("REALM_CACHE_SECONDS"), low=0, high=86400),
            realm_cache_negative_ttl=_float(
                "REALM_CACHE_NEGATIVE_SECONDS", get("REALM_CACHE_NEGATIVE_SECONDS"), low=0, high=86400
            ),
            realm_cache_size=_int("REALM_CACHE_SIZE", get("REALM_CACHE_SIZE"), low=1, high=10_000_000),
            # ---- issue 13 hardening
            realm_lookup_rate=_float("REALM_LOOKUP_RATE", get("REALM_LOOKUP_RATE"), low=0.1, high=100_000),
            realm_lookup_max_concurrent=_int(
                "REALM_LOOKUP_MAX_CONCURRENT", get("REALM_LOOKUP_MAX_CONCURRENT"), low=1, high=1000
            ),
            **_revocation(get),
            api_key_write_role=_one_role("API_KEY_WRITE_ROLE", get("API_KEY_WRITE_ROLE")),
            api_key_read_role=_one_role("API_KEY_READ_ROLE", get("API_KEY_READ_ROLE")),
        )

    def describe(self) -> dict[str, object]:
        """A printable view of the settings (secrets masked)."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = str(value)
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out
