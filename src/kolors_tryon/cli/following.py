"""Following jobs to their end and showing their records: `submit|batch --wait`, `demo`,
`status` and `jobs` share these lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import NoReturn

import click

from kolors_tryon.cli import door
from kolors_tryon.config import Settings
from kolors_tryon.config.defaults import COPY_WAIT
from kolors_tryon.store import JobRecord, JobState

__all__ = ["describe", "follow_to_end", "report", "wait_for"]


def wait_for(
    settings: Settings, job_ids: Sequence[str], timeout: float, *, show: bool
) -> list[JobRecord]:
    """Poll the store until every job is terminal (or the timeout), showing progress."""
    unique = list(dict.fromkeys(job_ids))
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    copies_by: float | None = None
    with (
        door.opened_store(settings) as store,
        click.progressbar(
            length=len(unique), label="finished", file=sys.stderr, hidden=not show
        ) as bar,
    ):
        while True:
            records = [store.get(job_id, settings.producer) for job_id in unique]
            done = 0
            for job_id, record in zip(unique, records, strict=True):
                state = record.state if record else "waiting for a worker"
                if show and seen.get(job_id) != state and len(unique) == 1:
                    click.echo(f"\n  {job_id}: {state}", err=True)
                seen[job_id] = str(state)
                done += bool(record and record.terminal)
            bar.update(done - bar.pos)
            if done == len(unique) and copies_by is None:
                # Copies are made after success, in the background: wait a little.
                copies_by = time.monotonic() + COPY_WAIT
            copying = copies_by is not None and time.monotonic() < copies_by
            if copying and any(_copy_pending(settings, r) for r in records):
                time.sleep(0.5)
                continue
            if done == len(unique) or time.monotonic() > deadline:
                return [r or _unknown(j) for j, r in zip(unique, records, strict=True)]
            time.sleep(0.5)


def _copy_pending(settings: Settings, record: JobRecord | None) -> bool:
    """A succeeded job whose copies are still being made."""
    return (
        settings.store_result_copies
        and record is not None
        and record.state is JobState.SUCCEEDED
        and any(image.stored is None for image in record.images)
    )


def _unknown(job_id: str) -> JobRecord:
    return JobRecord(job_id=job_id, state=JobState.QUEUED, created_at="", updated_at="")


def report(records: Iterable[JobRecord], as_json: bool) -> None:
    """The records the wait ended on: a JSON list, or a few lines each."""
    records = list(records)
    if as_json:
        door.emit([r.to_json_dict() for r in records])
        return
    for record in records:
        click.echo(describe(record))


def follow_to_end(
    settings: Settings, job_ids: Sequence[str], timeout: float, as_json: bool
) -> NoReturn:
    """The end of `--wait`: follow the jobs, show them, exit 0 when every one succeeded."""
    records = wait_for(settings, job_ids, timeout, show=not as_json)
    report(records, as_json)
    sys.exit(0 if all(r.state is JobState.SUCCEEDED for r in records) else 1)


def describe(record: JobRecord) -> str:
    """A job in a few lines: its id and state, its task, images and error."""
    colour = {"succeeded": "green", "failed": "red", "rejected": "yellow"}.get(record.state)
    line = f"{record.job_id}  {click.style(str(record.state), fg=colour)}"
    if record.kling_task_id:
        line += f"  task {record.kling_task_id}"
    for image in record.images:
        line += f"\n    image {image.index}: {image.stored or image.url}"
    if record.error:
        line += f"\n    {record.error.code}: {record.error.message}"
    return line
