"""Thin Celery tasks: each calls one pipeline step and acts on the Step it returns."""

from kolors_tryon.tasks.definitions import register_tasks

__all__ = ["register_tasks"]
