"""Settings (pydantic-settings) and the Celery configuration built from them."""

from kolors_tryon.config.settings import (
    ENV_PREFIX,
    SANDBOX_API_KEY,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = ["ENV_PREFIX", "SANDBOX_API_KEY", "Settings", "SettingsError", "load_settings"]
