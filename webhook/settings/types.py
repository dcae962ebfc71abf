"""The value types of the settings: pydantic annotated types, each with the rule it enforces.

Rules of this module:
- Pure: no IO, no environment access; each type turns one variable's text into its typed value or
  raises `ValueError` with a message saying what is wrong (the model prefixes the variable's name).
- A message never quotes a secret's value (`OptionalSecret`, `DatabaseUrl`).
- Lists are comma-separated text (`NoDecode`: never JSON), blanks dropped, duplicates folded, order kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr
from pydantic_settings import NoDecode
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from webhook.core.realms import REALM_NAME_RE

ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
MIN_ACTIONS_SECRET_CHARS: Final = 16
ROLE_RE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_SCHEMA_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DRIVERS: Final = {
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


class DatabaseUrl(SecretStr):
    """A database URL: `str`/`repr` show it with passwords masked (user info and query)."""

    def _display(self) -> str:
        url = make_url(self.get_secret_value())
        hidden = {k: "redacted" for k in url.query if "pass" in k.lower() or "secret" in k.lower()}
        return url.update_query_dict(hidden).render_as_string(hide_password=True)


def csv(value: object) -> tuple[str, ...]:
    """Comma-separated text (or an iterable, when built in code) as a tuple: trimmed, deduplicated."""
    parts: Iterable[object] = value.split(",") if isinstance(value, str) else value  # type: ignore[assignment]
    return tuple(dict.fromkeys(str(p).strip() for p in parts if str(p).strip()))


def _text(value: object) -> object:
    """Strings trimmed; anything else (a value built in code) as it is."""
    return value.strip() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _blank_is_false(value: object) -> object:
    return False if isinstance(value, str) and not value.strip() else _lower(value)


def _none_if_blank(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else _text(value)


def base_url(value: str) -> str:
    """An http(s) base URL without query, fragment, credentials or trailing slash."""
    from urllib.parse import urlsplit  # noqa: PLC0415 - only settings parse URLs this way

    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if "?" in value or "#" in value or parts.username or parts.password:
        raise ValueError(f"{value!r} must not carry a query, fragment or credentials")
    return value


def _optional_base_url(value: str | None) -> str | None:
    return None if value is None else base_url(value)


def _base_urls(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(base_url(v) for v in values)


def _realms(values: tuple[str, ...]) -> tuple[str, ...]:
    for realm in values:
        if not REALM_NAME_RE.fullmatch(realm):
            raise ValueError(f"{realm!r} is not a valid realm name")
    return values


def _realm(value: str) -> str:
    return _realms((value,))[0]


def _roles(values: frozenset[str]) -> frozenset[str]:
    for role in sorted(values):
        if not ROLE_RE.fullmatch(role):
            raise ValueError(f"{role!r} is not a valid role name")
    return values


def _role(value: str) -> str:
    return next(iter(_roles(frozenset({value}))))


def _one_optional_role(value: object) -> str | None:
    roles = csv(value or "")
    if len(roles) > 1:
        raise ValueError("a single role name is expected")
    return _role(roles[0]) if roles else None


def _client_ids(values: frozenset[str]) -> frozenset[str]:
    for client in sorted(values):
        if not ROLE_RE.fullmatch(client):
            raise ValueError(f"{client!r} is not a valid client id")
    return values


def _algorithms(values: frozenset[str]) -> frozenset[str]:
    if not values:
        raise ValueError("at least one algorithm is required")
    unsafe = sorted(values - ASYMMETRIC_ALGORITHMS)
    if unsafe:
        raise ValueError(f"{', '.join(unsafe)} not allowed; choose from {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
    return values


def _uuid(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.lower()
    if not _UUID_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text


def _schema(value: str | None) -> str | None:
    if value is not None and not _SCHEMA_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a lowercase SQL identifier ([a-z_][a-z0-9_]*, <= 63)")
    return value


def _database_url(value: object) -> object:
    """The URL with its driver made explicit (asyncpg or aiosqlite); the error never quotes the URL."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not isinstance(value, str):
        return value
    try:
        url = make_url(value.strip())
    except ArgumentError:
        raise ValueError("not a database URL (expected postgresql+asyncpg:// or sqlite+aiosqlite://)") from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ValueError(f"driver {url.drivername!r} not supported; use postgresql+asyncpg or sqlite+aiosqlite")
    return DatabaseUrl(url.set(drivername=driver).render_as_string(hide_password=False))


def _secret(min_chars: int) -> Any:
    """A secret: empty means unset (None); never quoted in a message."""

    def check(value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str) or not value:
            return None if value == "" else value
        if value != value.strip():
            raise ValueError("must not start or end with whitespace")
        if len(value) < min_chars:
            raise ValueError(f"at least {min_chars} characters are required")
        return SecretStr(value)

    return BeforeValidator(check)


def seconds(low: float, high: float) -> Any:
    """A finite number of seconds within low..high."""
    return Field(ge=low, le=high, allow_inf_nan=False)


def within(low: int, high: int) -> Any:
    """An integer within low..high."""
    return Field(ge=low, le=high)


_Csv = BeforeValidator(csv)
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_blank_is_false)]
BaseUrl = Annotated[str, BeforeValidator(_text), AfterValidator(base_url)]
OptionalBaseUrl = Annotated[str | None, BeforeValidator(_none_if_blank), AfterValidator(_optional_base_url)]
BaseUrls = Annotated[tuple[str, ...], NoDecode, _Csv, AfterValidator(_base_urls)]
Names = Annotated[frozenset[str], NoDecode, _Csv]
ClientIds = Annotated[frozenset[str], NoDecode, _Csv, AfterValidator(_client_ids)]
RealmName = Annotated[str, BeforeValidator(_text), AfterValidator(_realm)]
RealmNames = Annotated[tuple[str, ...], NoDecode, _Csv, AfterValidator(_realms)]
RealmSet = Annotated[frozenset[str], NoDecode, _Csv, AfterValidator(_realms)]
Role = Annotated[str, BeforeValidator(_text), AfterValidator(_role)]
Roles = Annotated[frozenset[str], NoDecode, _Csv, AfterValidator(_roles)]
OptionalRole = Annotated[str | None, NoDecode, BeforeValidator(_one_optional_role)]
Algorithms = Annotated[frozenset[str], NoDecode, _Csv, AfterValidator(_algorithms)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
LogFormat = Annotated[Literal["json", "console"], BeforeValidator(_lower)]
OptionalUuid = Annotated[str | None, BeforeValidator(_none_if_blank), AfterValidator(_uuid)]
OptionalSchema = Annotated[str | None, BeforeValidator(_none_if_blank), AfterValidator(_schema)]
Database = Annotated[DatabaseUrl, BeforeValidator(_database_url)]
OptionalSecret = Annotated[SecretStr | None, _secret(1)]
ActionsSecret = Annotated[SecretStr | None, _secret(MIN_ACTIONS_SECRET_CHARS)]


def env(name: str, default: str, help: str, example: str, *, secret: bool = False) -> Any:
    """A field read from environment variable `name`; `default` is its text, validated like any value."""
    return Field(
        default, validation_alias=name, description=help, examples=[example], json_schema_extra={"secret": secret}
    )
