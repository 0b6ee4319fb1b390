"""The bottom layer: Settings, every default number, the one backoff, the Celery config.

`config.defaults` holds every default number with its reason, `config.backoff` the one
backoff formula and the retry budget, `config.celery` the Celery configuration and the
broker topology built from Settings. Nothing here imports another part of the service.
"""

from kolors_tryon.config.settings import (
    ENV_PREFIX,
    SANDBOX_API_KEY,
    Settings,
    SettingsError,
    load_settings,
)

__all__ = ["ENV_PREFIX", "SANDBOX_API_KEY", "Settings", "SettingsError", "load_settings"]
