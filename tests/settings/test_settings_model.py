"""webhook.settings: the pydantic-settings model's sources, error messages and secrets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from webhook.settings import VARIABLES, ConfigError, Settings

KC = "http://keycloak:8080"
ACTIONS = "0123456789abcdef-actions"
DB_PASSWORD = "hunter2-db-password"


def config_error(**environ: str) -> str:
    """The ConfigError message for KEYCLOAK_URL=KC plus these variables (fails the test if accepted)."""
    with pytest.raises(ConfigError) as info:
        Settings.from_environ({"KEYCLOAK_URL": KC, **environ})
    return str(info.value)


def test_every_field_but_dev_mode_is_a_documented_variable() -> None:
    """Each field is read from one variable with a description and an example; dev_mode from none."""
    fields = Settings.model_fields
    read = {name for name, f in fields.items() if f.validation_alias}
    assert set(fields) - read == {"dev_mode"}
    assert [v.name for v in VARIABLES] == [str(fields[name].validation_alias) for name in fields if name in read]
    assert all(v.help and v.example for v in VARIABLES)


def test_only_declared_variables_are_read() -> None:
    """A variable named like a field (dev_mode, port) but not declared changes nothing."""
    s = Settings.from_environ({"KEYCLOAK_URL": KC, "dev_mode": "true", "port": "1", "keycloak_url": "http://x"})
    assert (s.dev_mode, s.port, s.keycloak_url) == (False, 8080, KC)


def test_process_environment_is_a_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() reads the process environment the same way from_environ reads its mapping."""
    monkeypatch.setenv("KEYCLOAK_URL", KC)
    monkeypatch.setenv("ALLOWED_AZP", "admin-portal, voting-portal")
    monkeypatch.setenv("JWKS_TTL_SECONDS", " 60 ")
    assert Settings() == Settings.from_environ(
        {"KEYCLOAK_URL": KC, "ALLOWED_AZP": "admin-portal,voting-portal", "JWKS_TTL_SECONDS": "60"}
    )


def test_from_environ_reads_only_its_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable exported in the process but absent from the mapping keeps its default."""
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("PORT", "9999")
    s = Settings.from_environ({"KEYCLOAK_URL": KC})
    assert (s.log_level, s.port) == ("info", 8080)


def test_lists_are_comma_separated_never_json() -> None:
    """A JSON-looking list is split on commas like any value, not decoded."""
    s = Settings.from_environ({"KEYCLOAK_URL": KC, "ALLOWED_AUDIENCES": '["account","hasura"]'})
    assert s.audiences == {'["account"', '"hasura"]'}


def test_each_bad_variable_gets_its_own_line_in_declaration_order() -> None:
    """Several bad values are all reported, one `VARIABLE: reason` line each, in the README's order."""
    lines = config_error(PORT="x", CLOCK_LEEWAY_SECONDS="301", LOG_FORMAT="xml").splitlines()
    assert [line.split(":")[0] for line in lines] == ["CLOCK_LEEWAY_SECONDS", "LOG_FORMAT", "PORT"]
    assert lines[0] == "CLOCK_LEEWAY_SECONDS: 301 is outside 0..300"
    assert lines[2] == "PORT: Input should be a valid integer, unable to parse string as an integer (got 'x')"


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"ACTIONS_SECRET": f" {ACTIONS}"}, "ACTIONS_SECRET"),
        ({"ACTIONS_SECRET": ACTIONS[:10]}, "ACTIONS_SECRET"),
        ({"KEYCLOAK_ADMIN_CLIENT_SECRET": ACTIONS}, "KEYCLOAK_ADMIN_CLIENT_ID"),
        ({"DATABASE_URL": f"mysql://u:{DB_PASSWORD}@db/x"}, "DATABASE_URL"),
        ({"DATABASE_URL": f"not a url {DB_PASSWORD}"}, "DATABASE_URL"),
    ],
)
def test_errors_never_quote_a_secret(environ: dict[str, str], name: str) -> None:
    """A refused secret or database URL is named, and no part of its value is in the message."""
    message = config_error(**environ)
    assert message.startswith(f"{name}: ")
    value = next(iter(environ.values())).strip()
    assert not any(value[i : i + 8] in message for i in range(len(value) - 7) if value[i : i + 8].strip())


def test_secrets_are_secretstr_and_masked() -> None:
    """The secrets are SecretStr: repr, str and describe() show masks, get_secret_value() the value."""
    s = Settings.from_environ(
        {
            "KEYCLOAK_URL": KC,
            "ACTIONS_SECRET": ACTIONS,
            "KEYCLOAK_ADMIN_CLIENT_ID": "election-webhook",
            "KEYCLOAK_ADMIN_CLIENT_SECRET": "kc-admin-secret-value",
            "DATABASE_URL": f"postgres://webhook:{DB_PASSWORD}@db/x",
        }
    )
    assert isinstance(s.actions_secret, SecretStr) and isinstance(s.keycloak_admin_client_secret, SecretStr)
    shown = repr(s) + str(s) + str(s.describe()) + s.model_dump_json()
    for secret in (ACTIONS, "kc-admin-secret-value", DB_PASSWORD):
        assert secret not in shown
    assert s.describe()["database_url"] == "postgresql+asyncpg://webhook:***@db/x"
    assert s.database_url.get_secret_value() == f"postgresql+asyncpg://webhook:{DB_PASSWORD}@db/x"


def test_dev_copy_keeps_validated_values() -> None:
    """`webhook dev` derives its settings with model_copy: the other fields stay as validated."""
    s = Settings.from_environ({"KEYCLOAK_URL": KC})
    dev = s.model_copy(update={"dev_mode": True, "host": "127.0.0.1", "port": 9999})
    assert (dev.dev_mode, dev.port, dev.issuer_urls, dev.database_url) == (True, 9999, (KC,), s.database_url)
