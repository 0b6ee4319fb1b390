"""A clock that tests move by hand, for the store's and the pipeline's sense of time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.postgres import fresh_database
from kolors_tryon.config import Settings
from kolors_tryon.kling import KlingClient
from kolors_tryon.pipeline import Runtime
from kolors_tryon.store import JobStore


class SettableClock:
    """Starts at the real time; `advance` moves it forward instead of waiting."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def clocked_store(kind: str, tmp_path: Path, clock: SettableClock) -> Iterator[JobStore]:
    """A fresh, migrated store on `kind` ("sqlite" or "postgresql") keeping `clock`'s time."""
    if kind == "sqlite":
        store = JobStore.from_url(f"sqlite:///{tmp_path / 'jobs.sqlite'}", clock=clock)
        store.create_schema()
        yield store
        store.dispose()
        return
    with fresh_database() as url:
        store = JobStore.from_url(url, clock=clock)
        store.create_schema()
        yield store
        store.dispose()


def runtime_with_clock(settings: Settings, clock: SettableClock) -> Runtime:
    """A pipeline Runtime whose store keeps time by `clock` (orchestration specs)."""
    store = JobStore.from_url(settings.effective_database_url, clock=clock)
    store.create_schema()
    return Runtime(settings=settings, store=store, kling=KlingClient.from_settings(settings))
