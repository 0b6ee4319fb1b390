"""Opening the job store that Settings describe: one door for producers, CLI and workers."""

from __future__ import annotations

from kolors_tryon.config import Settings, load_settings
from kolors_tryon.store.repository import JobStore


def open_store(settings: Settings | None = None) -> JobStore:
    """The job store the workers write to, with its tables created if missing.

    The embedded default is a SQLite file in the data directory, which is created here
    so that the first command on a fresh machine works.
    """
    settings = settings or load_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore.from_url(settings.effective_database_url)
    store.create_schema()
    return store
