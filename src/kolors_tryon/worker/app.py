"""The Celery app factory: `create_app(settings)`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from kolors_tryon.config import Settings, load_settings
from kolors_tryon.config.celery import celery_config
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.observe import multiproc
from kolors_tryon.observe.context import job_context
from kolors_tryon.ops.account import AccountWatcher
from kolors_tryon.ops.exposition import MetricsServer
from kolors_tryon.ops.logs import configure_logging
from kolors_tryon.pipeline.holder import become_holder
from kolors_tryon.tasks import register_tasks
from kolors_tryon.tasks.runtime import bind_settings
from kolors_tryon.worker.delayed import DelayedIsolation
from kolors_tryon.worker.delivery_lane import DeliveryLaneStep
from kolors_tryon.worker.heartbeat import ClaimHeartbeat, ReconnectingConsumer, Recovery
from kolors_tryon.worker.intake_consumer import IntakeConsumer
from kolors_tryon.worker.sweeper import SweepTimer


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app wired for this service: config, tasks, the intake door, the delivery
    lane, the sweep."""
    settings = settings or load_settings()
    app = Celery("kolors_tryon", set_as_current=False)
    app.conf.update(celery_config(settings))
    bind_settings(app, settings)
    register_tasks(app)
    app.steps["consumer"].add(IntakeConsumer)
    # Webhook deliveries in threads of their own, so receivers cannot hold the pool.
    app.steps["worker"].add(DeliveryLaneStep)
    app.steps["consumer"].add(DelayedIsolation)
    app.steps["consumer"].add(Recovery)
    app.conf.worker_consumer = f"{ReconnectingConsumer.__module__}:{ReconnectingConsumer.__name__}"
    _start_sweeps_with_the_worker(app, settings.sweep_interval)
    _hold_claims_with_the_worker(app, settings)
    _observe_the_worker(app, settings)
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


def _hold_claims_with_the_worker(app: Celery, settings: Settings) -> None:
    """A holder id before the pool forks, a heartbeat while the worker runs, and the
    hand-back of its claims once its pool has finished (worker/heartbeat.py)."""
    heartbeat = ClaimHeartbeat(app, settings)

    def on_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            become_holder()

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            heartbeat.start()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        # Sent after a warm shutdown has let the pool finish what it ran.
        if getattr(sender, "app", None) is app:
            heartbeat.stop()

    worker_init.connect(on_init, weak=False)
    worker_ready.connect(on_ready, weak=False)
    worker_shutdown.connect(on_shutdown, weak=False)


# Tasks whose first argument is a job id: their log lines and Sentry events name it.
_JOB_TASKS = frozenset({TaskName.SUBMIT, TaskName.TRACK, TaskName.CALLBACK, TaskName.WEBHOOK})


def _observe_the_worker(app: Celery, settings: Settings) -> None:
    """Logging, job context, metrics endpoint and account watch of a worker.

    - `setup_logging` has a receiver, so Celery leaves logging to `ops.logs` (text or
      JSON, redacted) in the main process and, inherited, in the pool;
    - each task of a job runs inside `job_context(job_id)`;
    - a pool process that exits is marked dead for prometheus_client;
    - the main process serves `/metrics` and reads the account's units.
    """
    server = MetricsServer(settings)
    watcher = AccountWatcher(settings)
    contexts: dict[str, Any] = {}

    def on_setup_logging(**_: Any) -> None:
        configure_logging(settings)

    def on_prerun(sender: Any = None, task_id: str = "", args: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not app:
            return
        job_id = args[0] if sender.name in _JOB_TASKS and args else None
        manager = job_context(str(job_id) if job_id is not None else None)
        manager.__enter__()
        contexts[task_id] = manager

    def on_postrun(sender: Any = None, task_id: str = "", **_: Any) -> None:
        manager = contexts.pop(task_id, None)
        if manager is not None:
            manager.__exit__(None, None, None)

    def on_process_shutdown(pid: int | None = None, **_: Any) -> None:
        if pid is not None:
            multiproc.mark_dead(pid)

    def on_ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app:
            server.start()
            watcher.start()

    def on_shutdown(sender: Any = None, **_: Any) -> None:
        watcher.stop()
        server.stop()

    for signal, receiver in (
        (setup_logging, on_setup_logging),
        (task_prerun, on_prerun),
        (task_postrun, on_postrun),
        (worker_process_shutdown, on_process_shutdown),
        (worker_ready, on_ready),
        (worker_shutdown, on_shutdown),
    ):
        signal.connect(receiver, weak=False)
