"""Celery app factory, broker topology, the intake consumer, events and the sweep timer."""

from kolors_tryon.worker.app import create_app

__all__ = ["create_app"]
