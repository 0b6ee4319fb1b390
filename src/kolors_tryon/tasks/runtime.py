"""Which Settings belong to which Celery app, and each process's Runtime built from them.

Pool processes are forked from the worker's main process: connection pools (database,
HTTP) must not cross a fork, so a Runtime is built lazily in the process that uses it
and rebuilt when the process id changes.
"""

from __future__ import annotations

import os
import threading
from weakref import WeakKeyDictionary

from celery import Celery

from kolors_tryon.config import Settings
from kolors_tryon.pipeline import Runtime

_settings: WeakKeyDictionary[Celery, Settings] = WeakKeyDictionary()
_runtimes: WeakKeyDictionary[Celery, tuple[int, Runtime]] = WeakKeyDictionary()
_lock = threading.Lock()


def bind_settings(app: Celery, settings: Settings) -> None:
    _settings[app] = settings


def settings_of(app: Celery) -> Settings:
    try:
        return _settings[app]
    except KeyError:
        raise LookupError("this Celery app was not made by kolors_tryon.create_app") from None


def runtime_for(app: Celery) -> Runtime:
    """This process's Runtime for `app` (built on first use after a fork)."""
    pid = os.getpid()
    with _lock:
        cached = _runtimes.get(app)
        if cached is not None and cached[0] == pid:
            return cached[1]
        runtime = Runtime.from_settings(settings_of(app))
        _runtimes[app] = (pid, runtime)
        return runtime
