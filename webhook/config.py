"""Settings: read once from the environment at start, validated, frozen (the `webhook.settings` model).

The public names the rest of the service imports; the model, its field groups and their rules live
in the `webhook.settings` package (pydantic-settings). Secrets are pydantic `SecretStr`.
"""

from webhook.settings import ASYMMETRIC_ALGORITHMS, MIN_ACTIONS_SECRET_CHARS, VARIABLES, ConfigError, Settings, Variable

__all__ = ["ASYMMETRIC_ALGORITHMS", "MIN_ACTIONS_SECRET_CHARS", "VARIABLES", "ConfigError", "Settings", "Variable"]
