"""The actions' and provisioning's settings: declared, validated, secrets masked, auto choices."""

from __future__ import annotations

import pytest

from webhook.settings import VARIABLES, ConfigError, Settings

KC = "http://keycloak:8080"
ADMIN = {"KEYCLOAK_ADMIN_CLIENT_ID": "election-webhook", "KEYCLOAK_ADMIN_CLIENT_SECRET": "kc-admin-secret"}
SECRET = "0123456789abcdef0123"
NEW = {
    "ACTIONS_SECRET",
    "SUPER_ADMIN_TENANT_ID",
    "KEYCLOAK_ADMIN_REALM",
    "KEYCLOAK_ADMIN_CLIENT_ID",
    "KEYCLOAK_ADMIN_CLIENT_SECRET",
    "KEYCLOAK_ADMIN_TIMEOUT_SECONDS",
    "STRICT_REALM_REGISTRY",
    "PROVISIONING_WORKER",
    "PROVISIONING_POLL_SECONDS",
    "PROVISIONING_MAX_ATTEMPTS",
    "PROVISIONING_BACKOFF_MAX_SECONDS",
    "PROVISIONING_LEASE_SECONDS",
    "VOTING_PORTAL_URL",
    "ADMIN_PORTAL_URL",
    "REALM_CACHE_SECONDS",
    "REALM_CACHE_NEGATIVE_SECONDS",
    "REALM_CACHE_SIZE",
}


def settings(**environ: str) -> Settings:
    return Settings.from_environ({"KEYCLOAK_URL": KC, **environ})


def error(**environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        settings(**environ)
    return str(info.value)


def test_variables_declared_with_help_and_example() -> None:
    """Every new variable is in VARIABLES with a help text and an example."""
    declared = {v.name: v for v in VARIABLES}
    assert declared.keys() >= NEW
    assert all(declared[name].help and declared[name].example for name in NEW)


def test_defaults_disable_actions_and_worker() -> None:
    """By default no secret, no worker, no strict registry, admin realm master."""
    s = settings()
    assert (s.actions_secret, s.provisioning_worker, s.strict_realm_registry) == (None, False, False)
    assert (s.keycloak_admin_realm, s.super_admin_tenant_id) == ("master", None)


def test_worker_auto_needs_secret_and_admin_client() -> None:
    """PROVISIONING_WORKER=auto runs the worker when both the actions secret and the admin client are set."""
    assert settings(ACTIONS_SECRET=SECRET, **ADMIN).provisioning_worker is True
    assert settings(ACTIONS_SECRET=SECRET).provisioning_worker is False
    assert settings(ACTIONS_SECRET=SECRET, PROVISIONING_WORKER="false", **ADMIN).provisioning_worker is False
    assert "PROVISIONING_WORKER" in error(PROVISIONING_WORKER="true")
    assert "PROVISIONING_WORKER" in error(PROVISIONING_WORKER="sometimes", **ADMIN)


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"ACTIONS_SECRET": "short"}, "ACTIONS_SECRET"),
        ({"ACTIONS_SECRET": f" {SECRET}"}, "ACTIONS_SECRET"),
        ({"SUPER_ADMIN_TENANT_ID": "tenant-1"}, "SUPER_ADMIN_TENANT_ID"),
        ({"KEYCLOAK_ADMIN_REALM": "../master"}, "KEYCLOAK_ADMIN_REALM"),
        ({"KEYCLOAK_ADMIN_CLIENT_ID": "only-the-id"}, "KEYCLOAK_ADMIN_CLIENT_ID"),
        ({"KEYCLOAK_ADMIN_CLIENT_SECRET": "only-the-secret"}, "KEYCLOAK_ADMIN_CLIENT_ID"),
        ({"STRICT_REALM_REGISTRY": "maybe"}, "STRICT_REALM_REGISTRY"),
        ({"PROVISIONING_MAX_ATTEMPTS": "0"}, "PROVISIONING_MAX_ATTEMPTS"),
        ({"PROVISIONING_POLL_SECONDS": "nan"}, "PROVISIONING_POLL_SECONDS"),
        ({"VOTING_PORTAL_URL": "ftp://vote"}, "VOTING_PORTAL_URL"),
        ({"ADMIN_PORTAL_URL": "https://admin.example/?x=1"}, "ADMIN_PORTAL_URL"),
        ({"REALM_CACHE_SIZE": "0"}, "REALM_CACHE_SIZE"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], name: str) -> None:
    """A bad value stops the service with a message naming the variable."""
    assert name in error(**environ)


def test_values_are_read() -> None:
    """Values are parsed and normalized (UUID lowercased, URLs without trailing slash)."""
    s = settings(
        ACTIONS_SECRET=SECRET,
        SUPER_ADMIN_TENANT_ID="90505C8A-23A9-4CDF-A26B-4E19F6A097D5",
        STRICT_REALM_REGISTRY="true",
        VOTING_PORTAL_URL="https://vote.example.org/",
        PROVISIONING_LEASE_SECONDS="30",
        REALM_CACHE_NEGATIVE_SECONDS="0",
        **ADMIN,
    )
    assert s.super_admin_tenant_id == "90505c8a-23a9-4cdf-a26b-4e19f6a097d5"
    assert (s.strict_realm_registry, s.voting_portal_url, s.provisioning_lease) == (
        True,
        "https://vote.example.org",
        30,
    )
    assert s.realm_cache_negative_ttl == 0


def test_secrets_are_masked() -> None:
    """ACTIONS_SECRET and the admin client secret never show in repr or describe()."""
    s = settings(ACTIONS_SECRET=SECRET, **ADMIN)
    shown = repr(s) + str(s.describe())
    assert SECRET not in shown and "kc-admin-secret" not in shown
    assert s.actions_secret is not None and s.actions_secret.get_secret_value() == SECRET
