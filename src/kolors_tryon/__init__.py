"""kolors-tryon: try-on jobs from RabbitMQ, through Celery workers, to the Kling API.

The public surface: put jobs on the queue (`enqueue`, `JobPublisher`), read them back
(`get_job`, `list_jobs`), build a worker app (`create_app`), configure (`Settings`).

The layers. Imports run one way, from a higher layer to a lower one, never back and
never sideways between packages of one layer (tests/unit/test_layers.py checks it):

    6  cli/, this module      the `tryon` command (a module per group of commands, one
                              shared door); the public surface re-exported here
    5  worker/ web/           Celery's app (factory, intake consumer, sweep timer,
                              reporting, launcher); the HTTP service beside it, with
                              the review console under web/console/
    4  tasks/                 thin Celery tasks on one base (tasks/base.py), their
                              follow-ups, the per-process Runtime bound to an app,
                              publishing events and dead letters
    3  pipeline/              the Celery-free core: intake, dispatch, submit, track
       producer.py            the Python door: config, jobs, store and kombu only
       ops/                   health, logs, the /metrics text, the journal of changes
    2  jobs/ kling/ store/    the job contract, the API client, the job store (one
                              module per aggregate on one Database; JobStore a facade)
    1  observe/               metrics helpers and the job context of log lines
    0  config/                Settings, every default number, the backoff, Celery config,
                              the task names (TaskName)
       emulator/              the local Kling emulator: imports nothing of the service
   -1  errors.py              TryonError, the root of the service's errors; JobNotFound

Names here are imported on first use (PEP 562), so that importing one subpackage (the
emulator, the Kling client) does not pull in Celery and every layer above it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kolors_tryon.config import Settings, SettingsError, load_settings
    from kolors_tryon.errors import JobNotFound, TryonError
    from kolors_tryon.jobs import JobMessage, JobRejected, validate_job
    from kolors_tryon.kling import KlingClient, KlingError
    from kolors_tryon.pipeline.storage import result_urls
    from kolors_tryon.producer import (
        InvalidJob,
        JobPublisher,
        enqueue,
        enqueue_batch,
        get_batch,
        get_job,
        list_jobs,
    )
    from kolors_tryon.store import JobRecord, JobState
    from kolors_tryon.worker import create_app

# Where each public name lives (the imports above, for type checkers, say the same).
_SOURCES: dict[str, str] = {
    **dict.fromkeys(("Settings", "SettingsError", "load_settings"), "kolors_tryon.config"),
    **dict.fromkeys(("JobNotFound", "TryonError"), "kolors_tryon.errors"),
    **dict.fromkeys(("JobMessage", "JobRejected", "validate_job"), "kolors_tryon.jobs"),
    **dict.fromkeys(("KlingClient", "KlingError"), "kolors_tryon.kling"),
    **dict.fromkeys(
        (
            "InvalidJob",
            "JobPublisher",
            "enqueue",
            "enqueue_batch",
            "get_batch",
            "get_job",
            "list_jobs",
        ),
        "kolors_tryon.producer",
    ),
    **dict.fromkeys(("JobRecord", "JobState"), "kolors_tryon.store"),
    "result_urls": "kolors_tryon.pipeline.storage",
    "create_app": "kolors_tryon.worker",
}

__all__ = [  # noqa: RUF022 - grouped by use, as dramatiq does
    # errors: one root, one branch per kind
    "TryonError",
    "JobNotFound",
    # configuration
    "Settings",
    "SettingsError",
    "load_settings",
    # producing jobs
    "JobMessage",
    "JobPublisher",
    "JobRejected",
    "InvalidJob",
    "enqueue",
    "enqueue_batch",
    "validate_job",
    # reading results
    "JobRecord",
    "JobState",
    "get_job",
    "get_batch",
    "list_jobs",
    "result_urls",
    # running workers
    "create_app",
    # the Kling API client
    "KlingClient",
    "KlingError",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
