"""Thin Celery tasks: each calls one pipeline step and acts on the Step it returns.

What the tasks need lives here too: the per-process Runtime bound to an app
(`tasks.runtime`) and publishing events and dead letters (`tasks.messaging`).
"""

from kolors_tryon.tasks.definitions import register_tasks

__all__ = ["register_tasks"]
