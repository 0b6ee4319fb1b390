"""Thin Celery tasks: each calls one pipeline step and acts on the Step it returns.

The tasks (`tasks.definitions`) stand on one base class that holds the guard policy
(`tasks.base`: outages waited out, crashes retried, then parked), and what follows a step
is `tasks.followups`. What the tasks need lives here too: the per-process Runtime bound
to an app (`tasks.runtime`) and publishing events and dead letters (`tasks.messaging`).
"""

from kolors_tryon.tasks.definitions import register_tasks

__all__ = ["register_tasks"]
