"""The platform's settings: actions, realm provisioning, the strict realm registry, revocation, API keys.

Rules of this module: fields only, each read from the variable its `env(...)` names, with the rules
that tie them together as validators (the admin client id and secret go together; the worker and
revocations resolve `auto` from the fields declared above them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import SecretStr, ValidationInfo, field_validator

from webhook.settings.source import EnvironmentSettings
from webhook.settings.types import (
    ActionsSecret,
    BaseUrl,
    ClientIds,
    ConfigError,
    Flag,
    OptionalBaseUrl,
    OptionalSecret,
    OptionalUuid,
    RealmName,
    Role,
    Text,
    env,
    seconds,
    within,
)


class PlatformSettings(EnvironmentSettings):
    """The Hasura actions and what they drive: Keycloak realms, revocations, API keys."""

    actions_secret: ActionsSecret = env(
        "ACTIONS_SECRET",
        "",
        (
            "Shared secret Hasura sends in `X-Actions-Secret` on every action call (actions.yaml "
            "`value_from_env: ACTIONS_SECRET`), compared in constant time; at least 16 characters. Empty: "
            "every action call is answered 401."
        ),
        "5f0c…(32 random characters)",
        secret=True,
    )
    super_admin_tenant_id: OptionalUuid = env(
        "SUPER_ADMIN_TENANT_ID",
        "",
        (
            "Tenant (UUID) whose own realm's tokens may create tenants (`insertTenant`), create events for "
            "any tenant and get `PLATFORM_ROLES` (not its event realms' tokens). Empty: nobody may."
        ),
        "90505c8a-23a9-4cdf-a26b-4e19f6a097d5",
    )
    keycloak_admin_realm: RealmName = env(
        "KEYCLOAK_ADMIN_REALM",
        "master",
        "Realm of the service's own admin client (client-credentials grant) that creates realms.",
        "master",
    )
    keycloak_admin_client_id: Text = env(
        "KEYCLOAK_ADMIN_CLIENT_ID",
        "",
        (
            "Client id of that confidential admin client (service account allowed to create and update "
            "realms). Required to provision realms."
        ),
        "election-webhook",
    )
    keycloak_admin_client_secret: OptionalSecret = env(
        "KEYCLOAK_ADMIN_CLIENT_SECRET",
        "",
        "Secret of the admin client (masked in every output).",
        "(from Keycloak: Clients > election-webhook > Credentials)",
        secret=True,
    )
    keycloak_admin_timeout: Annotated[float, seconds(0.1, 600)] = env(
        "KEYCLOAK_ADMIN_TIMEOUT_SECONDS",
        "30",
        "Total time allowed for one Keycloak admin API call (creating a realm takes seconds).",
        "30",
    )
    provisioning_worker: Flag = env(
        "PROVISIONING_WORKER",
        "auto",
        (
            "Run the realm provisioning worker inside the service. auto: yes when ACTIONS_SECRET and the "
            "admin client are set. `webhook worker` runs it on its own."
        ),
        "false",
    )
    provisioning_poll: Annotated[float, seconds(0.01, 3600)] = env(
        "PROVISIONING_POLL_SECONDS",
        "5",
        "Time between two looks for due provisioning jobs (an action wakes the in-process worker at once).",
        "5",
    )
    provisioning_max_attempts: Annotated[int, within(1, 1000)] = env(
        "PROVISIONING_MAX_ATTEMPTS",
        "10",
        "Attempts before a provisioning job is marked failed (`webhook provisioning retry` re-queues it).",
        "10",
    )
    provisioning_backoff_max: Annotated[float, seconds(0.01, 86400)] = env(
        "PROVISIONING_BACKOFF_MAX_SECONDS",
        "300",
        "Cap of the exponential backoff between two attempts of one provisioning job.",
        "300",
    )
    provisioning_lease: Annotated[float, seconds(1, 86400)] = env(
        "PROVISIONING_LEASE_SECONDS",
        "120",
        "How long a claimed job belongs to its worker; the job of a worker that died is claimable again after it.",
        "120",
    )
    voting_portal_url: BaseUrl = env(
        "VOTING_PORTAL_URL",
        "http://127.0.0.1:3000",
        "Voting portal base URL written into the `voting-portal` client of new realms.",
        "https://vote.example.org",
    )
    admin_portal_url: BaseUrl = env(
        "ADMIN_PORTAL_URL",
        "http://127.0.0.1:3002",
        "Admin portal base URL written into the `admin-portal` client of new realms.",
        "https://admin.example.org",
    )
    strict_realm_registry: Flag = env(
        "STRICT_REALM_REGISTRY",
        "false",
        (
            "true: a tenant or event realm is trusted only if its tenant (and event) exist in the database, "
            "checked before any JWKS fetch (else `unknown_realm`). Realms named in the configuration stay "
            "trusted."
        ),
        "true",
    )
    realm_cache_ttl: Annotated[float, seconds(0, 86400)] = env(
        "REALM_CACHE_SECONDS", "300", "Strict realm registry: how long a registered realm is remembered.", "300"
    )
    realm_cache_negative_ttl: Annotated[float, seconds(0, 86400)] = env(
        "REALM_CACHE_NEGATIVE_SECONDS",
        "10",
        "Strict realm registry: how long a realm found unregistered is remembered.",
        "10",
    )
    realm_cache_size: Annotated[int, within(1, 10_000_000)] = env(
        "REALM_CACHE_SIZE",
        "10000",
        "Strict realm registry: most realms remembered (least recently used evicted).",
        "10000",
    )
    realm_lookup_rate: Annotated[float, seconds(0.1, 100_000)] = env(
        "REALM_LOOKUP_RATE",
        "50",
        (
            "Strict realm registry: database lookups of realms not cached, per second (a global bucket); "
            "above it a realm never seen registered is refused `unknown_realm` at once."
        ),
        "50",
    )
    realm_lookup_max_concurrent: Annotated[int, within(1, 1000)] = env(
        "REALM_LOOKUP_MAX_CONCURRENT",
        "4",
        (
            "Strict realm registry: most database lookups in flight; one more is refused `unknown_realm` at "
            "once (a realm seen registered before stays registered)."
        ),
        "4",
    )
    backchannel_logout_url: OptionalBaseUrl = env(
        "BACKCHANNEL_LOGOUT_URL",
        "",
        (
            "URL Keycloak reaches `POST /keycloak/backchannel-logout` on; written into the portal clients of "
            "new and provisioned realms (`backchannel.logout.url`, session required). Empty: not written."
        ),
        "http://webhook:8080/keycloak/backchannel-logout",
    )
    revocations: Flag = env(
        "REVOCATIONS",
        "auto",
        (
            "Honour back-channel logouts and `webhook sessions revoke` (needs the database). auto: on when "
            "BACKCHANNEL_LOGOUT_URL is set."
        ),
        "true",
    )
    backchannel_logout_audiences: ClientIds = env(
        "BACKCHANNEL_LOGOUT_AUDIENCES",
        "admin-portal,voting-portal",
        "Comma-separated client ids a logout token's `aud` must name one of. Empty: any audience.",
        "admin-portal,voting-portal",
    )
    revocation_max_token_lifetime: Annotated[int, within(1, 2_592_000)] = env(
        "REVOCATION_MAX_TOKEN_LIFETIME_SECONDS",
        "3600",
        (
            "Longest access-token lifetime of any trusted realm; a revocation is kept this long plus "
            "CLOCK_LEEWAY_SECONDS, after which no token it covers can still be valid."
        ),
        "300",
    )
    revocation_max_entries: Annotated[int, within(1, 100_000_000)] = env(
        "REVOCATION_MAX_ENTRIES",
        "1000000",
        (
            "Most active revocations held in memory; past it the oldest is dropped and the process reports "
            "itself uncertain until that revocation would have expired."
        ),
        "1000000",
    )
    revocation_max_lag: Annotated[float, seconds(0.5, 3600)] = env(
        "REVOCATION_MAX_LAG_SECONDS",
        "5",
        (
            "A process whose link to the database (LISTEN connection) has been down longer than this is "
            "uncertain: `/readyz` and `webhook_revocation_uncertain` say so."
        ),
        "5",
    )
    revocation_fail_closed: Flag = env(
        "REVOCATION_FAIL_CLOSED",
        "true",
        (
            "While uncertain, refuse (session_revoked) every token issued before the link was lost. false: "
            "keep accepting them (a logout during the outage takes effect when the link is back)."
        ),
        "true",
    )
    api_key_write_role: Role = env(
        "API_KEY_WRITE_ROLE",
        "api-key-write",
        "Role a tenant admin's token needs to create, rotate and revoke the tenant's API keys.",
        "api-key-write",
    )
    api_key_read_role: Role = env(
        "API_KEY_READ_ROLE",
        "api-key-read",
        "Role a tenant admin's token needs to list the tenant's API keys (`apiKeys`; the write role also may).",
        "api-key-read",
    )

    @field_validator("keycloak_admin_client_secret")
    @classmethod
    def _admin_client_pair(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "keycloak_admin_client_id" in info.data and bool(info.data["keycloak_admin_client_id"]) != (
            value is not None
        ):
            raise ConfigError(
                "KEYCLOAK_ADMIN_CLIENT_ID: set it together with KEYCLOAK_ADMIN_CLIENT_SECRET (both or neither)"
            )
        return value

    @field_validator("provisioning_worker", mode="before")
    @classmethod
    def _worker_auto(cls, value: object, info: ValidationInfo) -> object:
        """auto: run the worker when the actions secret and the admin client are both set."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            data = info.data
            return data.get("actions_secret") is not None and data.get("keycloak_admin_client_secret") is not None
        return value

    @field_validator("provisioning_worker")
    @classmethod
    def _worker_needs_admin_client(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("keycloak_admin_client_secret") is None:
            raise ValueError("needs KEYCLOAK_ADMIN_CLIENT_ID and KEYCLOAK_ADMIN_CLIENT_SECRET")
        return value

    @field_validator("revocations", mode="before")
    @classmethod
    def _revocations_auto(cls, value: object, info: ValidationInfo) -> object:
        """auto: honour revocations when BACKCHANNEL_LOGOUT_URL is set."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return info.data.get("backchannel_logout_url") is not None
        return value
