"""The service's whole configuration: one pydantic-settings model, read once at start, frozen.

Rules of this module:
- `Settings` is the three groups (hook, storage, platform) in one model; `VARIABLES` (name, default,
  help, example) is derived from its fields, and the README table and `check-config` come from them.
- `Settings.from_environ` is the one way in: a bad value raises `ConfigError` whose every line names
  the variable and says what is wrong; the process stops with that message.
- Secrets are `SecretStr` (the database URL a `DatabaseUrl`, shown with its password masked):
  `repr`, `str` and `describe()` never show them; `.get_secret_value()` is for the one place that needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from webhook.settings.hook import HookSettings
from webhook.settings.platform import PlatformSettings
from webhook.settings.source import reading
from webhook.settings.storage import StorageSettings
from webhook.settings.types import ConfigError

DEV_KEYCLOAK_URL: Final = "http://127.0.0.1:8090"


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable the service reads, as the README documents it."""

    name: str
    default: str
    help: str
    example: str = ""


class Settings(PlatformSettings, StorageSettings, HookSettings):
    """Every setting (fields in hook, storage, platform order). Build it with `Settings.from_environ`."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, require_keycloak: bool = True) -> Settings:
        """Read and validate every variable in `VARIABLES` from `environ`; raise `ConfigError` naming the culprit.

        With `require_keycloak=False` (database commands) a blank KEYCLOAK_URL means the dev issuer's.
        """
        if not require_keycloak and not environ.get("KEYCLOAK_URL", "").strip():
            environ = {**environ, "KEYCLOAK_URL": DEV_KEYCLOAK_URL}
        try:
            with reading(environ):
                return cls()
        except ValidationError as exc:
            raise ConfigError("\n".join(_message(error) for error in exc.errors())) from None

    def describe(self) -> dict[str, object]:
        """A printable view of the settings (secrets masked, sets sorted)."""
        out: dict[str, object] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = str(value)
            elif isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out


_FIELDS: Final = Settings.model_fields
_BY_NAME: Final = {str(f.validation_alias): name for name, f in _FIELDS.items() if f.validation_alias}

VARIABLES: Final[tuple[Variable, ...]] = tuple(
    Variable(str(f.validation_alias), str(f.default), str(f.description), str((f.examples or [""])[0]))
    for f in _FIELDS.values()
    if f.validation_alias
)


def _message(error: ErrorDetails) -> str:
    """One validation error as `VARIABLE: what is wrong`; a secret's value is never quoted."""
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ConfigError):
        return str(cause)  # a rule across variables: its message names the one to fix
    key = str(error["loc"][0]) if error["loc"] else ""
    field = _FIELDS.get(_BY_NAME.get(key, key))
    variable = str(field.validation_alias) if field is not None and field.validation_alias else key
    if isinstance(cause, ValueError):
        return f"{variable}: {cause}"
    if field is not None and isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret"):
        return f"{variable}: {error['msg']}"
    bounds = _bounds(field) if error["type"] in _OUT_OF_RANGE else None
    if bounds is not None:
        return f"{variable}: {str(error['input']).strip()} is outside {bounds}"
    return f"{variable}: {error['msg']} (got {error['input']!r})"


_OUT_OF_RANGE: Final = frozenset({"greater_than_equal", "less_than_equal"})


def _bounds(field: FieldInfo | None) -> str | None:
    """The `within`/`seconds` range of a numeric field as `low..high`, for an `outside` message."""
    metadata = field.metadata if field is not None else []
    low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in metadata if hasattr(m, "le")), None)
    return None if low is None or high is None else f"{low:g}..{high:g}" if isinstance(low, float) else f"{low}..{high}"
