"""Opening the job store that Settings describe: one door for producers, CLI and workers."""

from __future__ import annotations

from kolors_tryon.config import Settings, load_settings
from kolors_tryon.store.migrate import require_current_schema
from kolors_tryon.store.repository import JobStore


def prepare_schema(store: JobStore, settings: Settings) -> None:
    """Make sure the store's schema is the one this code needs, or refuse to go on.

    The embedded default (SQLite in the data directory, one machine) upgrades itself, so
    that the first command on a fresh machine works. A configured database is shared by
    many processes and versions, so it is migrated once, on purpose, by `tryon db
    upgrade`: here it is only checked, and an outdated one raises `SchemaOutdated`
    saying what to run.
    """
    if settings.database_url is None:
        store.create_schema()
    else:
        require_current_schema(store.engine)


def open_store(settings: Settings | None = None) -> JobStore:
    """The job store the workers write to, its schema checked (or, embedded, upgraded)."""
    settings = settings or load_settings()
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore.from_url(settings.effective_database_url)
    try:
        prepare_schema(store, settings)
    except BaseException:
        store.dispose()
        raise
    return store
