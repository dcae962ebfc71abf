"""Where settings come from: a mapping of environment variables, read by pydantic-settings' env source.

Rules of this module:
- Only the declared variables (each field's `validation_alias`) are read, names case-sensitive,
  values as text: lists are comma-separated, never JSON (the fields say `NoDecode`).
- The mapping is given (the process environment, or a test's dict): nothing else is read, no `.env` file.
  `reading(environ)` names it for the models built inside it; outside, it is `os.environ`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


@contextlib.contextmanager
def reading(environ: Mapping[str, str]) -> Iterator[None]:
    """Settings built inside this block read `environ`, and only it (not the process environment)."""
    token = _ENVIRON.set(environ)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over `environ` instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        declared = {f.validation_alias for f in self.settings_cls.model_fields.values()}
        return {name: value for name, value in self._environ.items() if name in declared}


class EnvironmentSettings(BaseSettings):
    """Base of the settings groups: frozen, fields read by their variable's name, defaults validated."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        frozen=True,
        extra="forbid",
        validate_default=True,
        validate_by_alias=True,
        validate_by_name=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then the environment (`reading`'s, else the process's); no dotenv or secrets."""
        environ = _ENVIRON.get()
        return init_settings, MappingEnvSource(settings_cls, os.environ if environ is None else environ)
