"""The Celery app factory: `create_app(settings)`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from kolors_tryon.config import Settings, load_settings
from kolors_tryon.config.celery import celery_config
from kolors_tryon.tasks import register_tasks
from kolors_tryon.tasks.runtime import bind_settings
from kolors_tryon.worker.intake_consumer import IntakeConsumer
from kolors_tryon.worker.sweeper import SweepTimer


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app wired for this service: config, tasks, the intake door, the sweep."""
    settings = settings or load_settings()
    app = Celery("kolors_tryon", set_as_current=False)
    app.conf.update(celery_config(settings))
    bind_settings(app, settings)
    register_tasks(app)
    app.steps["consumer"].add(IntakeConsumer)
    _start_sweeps_with_the_worker(app, settings.sweep_interval)
    return app


def _start_sweeps_with_the_worker(app: Celery, interval: float) -> None:
    timer = SweepTimer(app, interval)

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            timer.start()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        timer.stop()

    # Celery's signals are process-wide: keep strong references and filter by app.
    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)
