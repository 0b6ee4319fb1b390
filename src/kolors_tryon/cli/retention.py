"""Retention: `tryon purge` of ended jobs, `tryon forget` of one person's photos."""

from __future__ import annotations

import sys

import click

from kolors_tryon.cli import door
from kolors_tryon.errors import JobNotFound

__all__ = ["forget", "purge"]


@click.command()
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    required=True,
    help="Days since the job ended.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@door.json_option
def purge(days: float, dry_run: bool, as_json: bool) -> None:
    """Delete ended jobs (succeeded, failed, rejected) older than DAYS, copies included."""
    from kolors_tryon.pipeline.retention import purge as purge_jobs
    from kolors_tryon.pipeline.storage import ResultCopies

    settings = door.command_settings()
    with door.opened_store(settings) as store:
        report = purge_jobs(store, ResultCopies(settings), older_than_days=days, dry_run=dry_run)
    if as_json:
        door.emit(report.to_json_dict())
    else:
        verb = "would delete" if dry_run else "deleted"
        states = ", ".join(f"{n} {s}" for s, n in sorted(report.jobs.items())) or "none"
        click.echo(f"{verb} {sum(report.jobs.values())} job(s) ({states}), {report.copies} copies")
        if report.kept:
            click.secho(
                f"kept {report.kept} job(s): their copies could not be deleted", fg="yellow"
            )
    sys.exit(1 if report.kept else 0)


@click.command()
@click.argument("job_id")
@door.json_option
def forget(job_id: str, as_json: bool) -> None:
    """Remove a person's photos from JOB_ID: copies, photos, URLs, metadata, messages.

    The record keeps its ids, states, times and error code. A queued job ends failed
    (code `forgotten`); a job in flight at Kling is left alone (exit 1): run it again once
    the job has ended. Running it twice is harmless.
    """
    from kolors_tryon.pipeline.retention import forget as forget_job
    from kolors_tryon.pipeline.storage import ResultCopies, StorageError

    settings = door.command_settings()
    with door.opened_store(settings) as store:
        try:
            report = forget_job(store, ResultCopies(settings), job_id)
        except StorageError as exc:
            door.fail(
                f"the record is cleared, but copies could not be deleted: {exc}; run again",
                door.EXIT_FAILED,
            )
        if report is None:
            raise JobNotFound(job_id)
    if as_json:
        door.emit(report.to_json_dict())
    elif report.in_flight:
        click.secho(
            f"{job_id} is {report.state} at Kling: run forget again once it ended", fg="yellow"
        )
    else:
        extra = " (already forgotten)" if report.already_forgotten else ""
        payload = ", photos deleted" if report.payload_deleted else ""
        click.echo(f"{job_id} forgotten{extra}: {report.copies} copies deleted{payload}")
    sys.exit(1 if report.in_flight else 0)
