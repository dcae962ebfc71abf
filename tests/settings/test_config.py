"""webhook.settings: Settings read from the environment, validated, frozen."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from tests.core.conftest import EVENT_REALM, TENANT_REALM
from webhook.settings import VARIABLES, ConfigError, Settings

KC = "http://keycloak:8080"


def settings(**environ: str) -> Settings:
    """Settings from KEYCLOAK_URL=KC plus these variables."""
    return Settings.from_environ({"KEYCLOAK_URL": KC, **environ})


def config_error(**environ: str) -> str:
    """The ConfigError message for this environment (fails the test if it is accepted)."""
    with pytest.raises(ConfigError) as info:
        Settings.from_environ({"KEYCLOAK_URL": KC, **environ})
    return str(info.value)


def test_defaults() -> None:
    """With only KEYCLOAK_URL set, every setting has its documented default."""
    s = settings()
    assert s.keycloak_url == KC
    assert s.issuer_urls == (KC,)
    assert s.algorithms == {"RS256"}
    assert s.leeway == 30
    assert s.audiences == frozenset()
    assert s.azps == frozenset()
    assert s.anonymous_role is None
    assert s.forbidden_roles == {"admin"}
    assert s.extra_realms == frozenset()
    assert s.prefetch_realms == ()
    assert (s.max_token_bytes, s.max_body_bytes) == (16384, 1048576)
    assert (s.log_level, s.log_format, s.host, s.port) == ("info", "json", "127.0.0.1", 8080)


def test_variable_defaults_match_dataclass_defaults() -> None:
    """The VARIABLES defaults and the Settings field defaults agree."""
    assert settings() == Settings.model_validate({"keycloak_url": KC, "issuer_urls": (KC,)})


def test_variables_are_unique_and_documented() -> None:
    """Every variable has a unique name and a help text."""
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert all(v.help for v in VARIABLES)


def test_keycloak_url_required() -> None:
    """Without KEYCLOAK_URL, ConfigError names it."""
    for environ in ({}, {"KEYCLOAK_URL": ""}, {"KEYCLOAK_URL": "   "}):
        with pytest.raises(ConfigError, match="KEYCLOAK_URL"):
            Settings.from_environ(environ)


def test_keycloak_url_optional_when_not_required() -> None:
    """With require_keycloak=False a missing KEYCLOAK_URL gets a local default."""
    s = Settings.from_environ({}, require_keycloak=False)
    assert s.keycloak_url.startswith("http://127.0.0.1:")
    assert s.issuer_urls == (s.keycloak_url,)


def test_keycloak_url_trailing_slash_dropped() -> None:
    """Trailing slashes and blanks are removed from base URLs."""
    s = Settings.from_environ({"KEYCLOAK_URL": " http://keycloak:8080/ ", "KEYCLOAK_ISSUER_URL": "https://a.test//"})
    assert s.keycloak_url == KC
    assert s.issuer_urls == ("https://a.test",)


def test_keycloak_url_may_have_path() -> None:
    """A base URL with a path (legacy /auth) is accepted."""
    assert settings(KEYCLOAK_URL="http://keycloak:8080/auth").keycloak_url == "http://keycloak:8080/auth"


@pytest.mark.parametrize("name", ["KEYCLOAK_URL", "KEYCLOAK_ISSUER_URL"])
@pytest.mark.parametrize(
    "value",
    [
        "keycloak:8080",
        "ftp://keycloak",
        "file:///etc/passwd",
        "http://",
        "http:///realms",
        "//keycloak:8080",
        "http://keycloak:8080?x=1",
        "http://keycloak:8080/#frag",
        "http://user:pass@keycloak:8080",
        "http://user@keycloak:8080",
    ],
)
def test_bad_urls(name: str, value: str) -> None:
    """Non-http(s) URLs, URLs without host, with query, fragment or credentials are refused by name."""
    assert name in config_error(**{name: value})


@pytest.mark.parametrize("value", ["http://keycloak:8080?", "http://keycloak:8080#", "http://keycloak:8080/?"])
def test_empty_query_or_fragment_refused(value: str) -> None:
    """A base URL ending in a bare `?` or `#` is refused."""
    message = f"{value!r} accepted"
    try:
        Settings.from_environ({"KEYCLOAK_URL": value})
    except ConfigError as exc:
        message = str(exc)
    assert "KEYCLOAK_URL" in message


def test_issuer_url_defaults_to_keycloak_url() -> None:
    """Without KEYCLOAK_ISSUER_URL, the issuer is KEYCLOAK_URL."""
    assert settings(KEYCLOAK_ISSUER_URL="").issuer_urls == (KC,)


def test_issuer_url_accepts_a_list() -> None:
    """KEYCLOAK_ISSUER_URL is a comma-separated list, order kept, duplicates and blanks dropped."""
    s = settings(KEYCLOAK_ISSUER_URL="https://auth.example.org, http://127.0.0.1:8090,,https://auth.example.org")
    assert s.issuer_urls == ("https://auth.example.org", "http://127.0.0.1:8090")
    assert s.keycloak_url == KC


@pytest.mark.parametrize(
    ("value", "expected"),
    [("RS256", {"RS256"}), (" RS256 , ES256 ", {"RS256", "ES256"}), ("PS512,EdDSA", {"PS512", "EdDSA"})],
)
def test_allowed_algorithms(value: str, expected: set[str]) -> None:
    """ALLOWED_ALGORITHMS accepts asymmetric algorithms as a comma-separated list."""
    assert settings(ALLOWED_ALGORITHMS=value).algorithms == expected


@pytest.mark.parametrize(
    "value", ["none", "RS256,none", "HS256", "RS256,HS512", "rs256", "", " , ", "RSA-OAEP", "None"]
)
def test_allowed_algorithms_refused(value: str) -> None:
    """none, HS*, unknown spellings and an empty list are refused, naming ALLOWED_ALGORITHMS."""
    assert "ALLOWED_ALGORITHMS" in config_error(ALLOWED_ALGORITHMS=value)


INTEGERS = [
    ("CLOCK_LEEWAY_SECONDS", -1, 301),
    ("MAX_TOKEN_BYTES", 1023, 1048577),
    ("MAX_BODY_BYTES", 4095, 67108865),
    ("JWKS_TTL_SECONDS", 9, 86401),
    ("JWKS_MIN_REFETCH_SECONDS", -1, 3601),
    ("JWKS_RETRY_SECONDS", -1, 3601),
    ("JWKS_MAX_STALE_SECONDS", -1, 604801),
    ("JWKS_FETCH_TIMEOUT_SECONDS", 0, 61),
    ("JWKS_MAX_BYTES", 1023, 16777217),
    ("JWKS_NEGATIVE_TTL_SECONDS", -1, 86401),
    ("JWKS_MAX_REALMS", 0, 1000001),
    ("JWKS_MAX_CONCURRENT_FETCHES", 0, 1001),
    ("PORT", -1, 65536),
]


@pytest.mark.parametrize(("name", "low", "high"), INTEGERS)
def test_integers_out_of_range(name: str, low: int, high: int) -> None:
    """An integer just outside its range is a ConfigError naming the variable."""
    assert name in config_error(**{name: str(low)})
    assert name in config_error(**{name: str(high)})
    settings(**{name: str(low + 1)})
    settings(**{name: str(high - 1)})


@pytest.mark.parametrize(("name", "low", "high"), INTEGERS)
@pytest.mark.parametrize("value", ["abc", "1.5", "", "1e3", "0x10", "ten"])
def test_integers_not_integers(name: str, low: int, high: int, value: str) -> None:
    """A value that is not an integer is a ConfigError naming the variable."""
    assert name in config_error(**{name: value})


def test_integer_values_are_read() -> None:
    """Integer variables are parsed (blanks tolerated) into their settings."""
    s = settings(CLOCK_LEEWAY_SECONDS=" 10 ", JWKS_FETCH_TIMEOUT_SECONDS="5", PORT="9000")
    assert (s.leeway, s.jwks_fetch_timeout, s.port) == (10, 5, 9000)


def test_prefetch_realms_must_be_trusted() -> None:
    """PREFETCH_REALMS must be pattern realms or TRUSTED_EXTRA_REALMS."""
    assert "PREFETCH_REALMS" in config_error(PREFETCH_REALMS="master")
    assert "PREFETCH_REALMS" in config_error(PREFETCH_REALMS=f"{TENANT_REALM},master")
    s = settings(PREFETCH_REALMS=f"{TENANT_REALM}, {EVENT_REALM},master", TRUSTED_EXTRA_REALMS="master")
    assert s.prefetch_realms == (TENANT_REALM, EVENT_REALM, "master")
    assert s.extra_realms == {"master"}


@pytest.mark.parametrize("name", ["TRUSTED_EXTRA_REALMS", "PREFETCH_REALMS"])
@pytest.mark.parametrize("realm", ["..", "a/b", "a%2e", "a?b", "a#b", "a@b", "-x", ".hidden", "r" * 101, "réalm"])
def test_invalid_realm_names(name: str, realm: str) -> None:
    """Realm names with path, URL or non-ASCII characters are refused by name."""
    assert name in config_error(**{name: realm})


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"ANONYMOUS_ROLE": "anon,guest"}, "ANONYMOUS_ROLE"),
        ({"ANONYMOUS_ROLE": "a b"}, "ANONYMOUS_ROLE"),
        ({"FORBIDDEN_ROLES": "admin,bad role"}, "FORBIDDEN_ROLES"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
    ],
)
def test_other_invalid_values(environ: dict[str, str], name: str) -> None:
    """Bad roles, log level and log format are refused by name."""
    assert name in config_error(**environ)


def test_role_and_list_settings() -> None:
    """Roles, audiences and azps are read as trimmed sets."""
    s = settings(
        ANONYMOUS_ROLE=" anonymous ",
        FORBIDDEN_ROLES="admin, root",
        ALLOWED_AUDIENCES="account, hasura",
        ALLOWED_AZP="admin-portal,voting-portal",
        LOG_LEVEL="DEBUG",
    )
    assert s.anonymous_role == "anonymous"
    assert s.forbidden_roles == {"admin", "root"}
    assert s.audiences == {"account", "hasura"}
    assert s.azps == {"admin-portal", "voting-portal"}
    assert s.log_level == "debug"


def test_settings_is_frozen() -> None:
    """Settings cannot be changed after construction."""
    s = settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.algorithms = frozenset({"HS256"})


def test_describe_is_json_serialisable() -> None:
    """describe() lists every field with JSON-friendly values."""
    described = settings(ALLOWED_ALGORITHMS="RS256,ES256").describe()
    assert described["algorithms"] == ["ES256", "RS256"]
    assert set(Settings.model_fields) == set(described)
    orjson.dumps(described)
