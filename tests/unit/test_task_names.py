"""Task names: one enumeration, the names on the wire unchanged, every task on its base."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolors_tryon.config import Settings
from kolors_tryon.config.celery import TASK_QUEUES, celery_config
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.tasks.base import GuardedTask, TickTask
from kolors_tryon.worker import create_app

# The names producers, older workers and operators see: a literal table, the contract.
ON_THE_WIRE = {
    "tryon.intake",
    "tryon.submit",
    "tryon.submit_batch",
    "tryon.track",
    "tryon.track_batch",
    "tryon.callback",
    "tryon.copy_results",
    "tryon.dispatch",
    "tryon.sweep",
    "tryon.recover",
    "tryon.webhook",
    "tryon.cancelled",  # new with the job lifecycle (issue 19)
}


def test_the_names_on_the_wire_are_unchanged() -> None:
    """Every member's value is one of the names tasks travel under, and none is missing."""
    assert {str(name) for name in TaskName} == ON_THE_WIRE


def test_every_task_name_has_a_queue_and_a_route(tmp_path: Path) -> None:
    """No task can be sent to Celery's default queue for want of a route."""
    routes = celery_config(Settings(data_dir=tmp_path))["task_routes"]
    assert set(TASK_QUEUES) == set(TaskName)
    assert set(routes) == set(TaskName)


def test_the_app_defines_exactly_the_enumerated_tasks(tmp_path: Path) -> None:
    """The worker's app registers one task per member, under the member's name."""
    app = create_app(Settings(data_dir=tmp_path))
    ours = {name for name in app.tasks if name.startswith("tryon.")}
    assert ours == ON_THE_WIRE


@pytest.mark.parametrize(
    ("name", "base"),
    [
        (TaskName.INTAKE, GuardedTask),
        (TaskName.SUBMIT, GuardedTask),
        (TaskName.SUBMIT_BATCH, GuardedTask),
        (TaskName.TRACK, GuardedTask),
        (TaskName.TRACK_BATCH, GuardedTask),
        (TaskName.CALLBACK, GuardedTask),
        (TaskName.COPY_RESULTS, GuardedTask),
        (TaskName.DISPATCH, TickTask),
        (TaskName.SWEEP, TickTask),
        (TaskName.RECOVER, TickTask),
    ],
)
def test_each_task_stands_on_its_guard(tmp_path: Path, name: TaskName, base: type) -> None:
    """The guard policy comes from the base class, so no task body can go without it."""
    app = create_app(Settings(data_dir=tmp_path))
    assert isinstance(app.tasks[name], base)


def test_only_the_steps_holding_a_slot_fail_their_job_when_parked(tmp_path: Path) -> None:
    """A parked submit or track frees its job's slot; a parked copy leaves a success alone."""
    app = create_app(Settings(data_dir=tmp_path))
    failing = {name for name in TaskName if getattr(app.tasks[name], "fails_job", False)}
    assert failing == {TaskName.SUBMIT, TaskName.TRACK}
