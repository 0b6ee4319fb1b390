"""The Celery app factory, the intake consumer, the sweep timer, reporting, the launcher.

The only package that knows Celery's app: nothing below it imports it.
"""

from kolors_tryon.worker.app import create_app

__all__ = ["create_app"]
