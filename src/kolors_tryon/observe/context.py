"""The job a thread is working on, for log lines and Sentry tags.

A task sets it once (`job_context`, from the worker's `task_prerun` signal) and every
layer below adds what it learns (the Kling client: the task id and the request id), so
that a log line or an error event of any layer names its job without each call passing
ids down. Context variables, not thread-locals: a Celery pool process runs one task at a
time per thread, and `contextvars` also follow asyncio tasks in the web app.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["JOB_FIELDS", "current_job", "job_context", "note_job"]

#: The fields a job context may hold, in the order log lines show them.
JOB_FIELDS = ("job_id", "kling_task_id", "request_id", "attempt")

_job: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "tryon_job", default=None
)


@contextmanager
def job_context(job_id: str | None, **fields: object) -> Iterator[dict[str, str]]:
    """Within the block, log lines and Sentry events of this thread name `job_id`.

    Args:
        job_id: The job being worked on (None: no job, e.g. a sweep).
        **fields: Further `JOB_FIELDS` already known (kling_task_id, attempt).
    """
    data = {"job_id": job_id} if job_id else {}
    data.update({k: str(v) for k, v in fields.items() if v is not None and k in JOB_FIELDS})
    token = _job.set(data)
    try:
        yield data
    finally:
        _job.reset(token)


def note_job(**fields: object) -> None:
    """Add what was learned mid-task (a Kling task id, a request id) to the current job."""
    data = _job.get()
    if data is None:
        return
    data.update({k: str(v) for k, v in fields.items() if v is not None and k in JOB_FIELDS})


def current_job() -> dict[str, str]:
    """A copy of the current job's fields ({} outside any job)."""
    data = _job.get()
    return dict(data) if data else {}
