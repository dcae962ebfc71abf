"""Settings: the service's configuration, one pydantic-settings model read from the environment.

Owns: the typed fields and their rules (`types`), where values come from (`source`), the fields by
concern (`hook`, `storage`, `platform`) and the whole model with its error messages (`model`).
May import: pydantic, pydantic-settings, SQLAlchemy's URL parser and the pure `webhook.core.realms`; nothing
that does IO. Import the public names from `webhook.settings`.
"""

from webhook.settings.model import VARIABLES, Settings, Variable
from webhook.settings.types import ASYMMETRIC_ALGORITHMS, MIN_ACTIONS_SECRET_CHARS, ConfigError

__all__ = ["ASYMMETRIC_ALGORITHMS", "MIN_ACTIONS_SECRET_CHARS", "VARIABLES", "ConfigError", "Settings", "Variable"]
