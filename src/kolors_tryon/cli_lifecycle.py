"""The job lifecycle's commands: `tryon cancel JOB...` (and the `--deadline` of submit).

A module of its own, registered on the main group with one line, so that it moves into
the CLI package as it is. The answers come from the store's fenced move
(`pipeline.lifecycle.cancel_jobs`); the events and webhooks of the cancelled jobs go to
the workers as one `tryon.cancelled` message.
"""

from __future__ import annotations

import json
import sys

import click
from celery import Celery

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.celery import celery_config
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.pipeline.lifecycle import AT_KLING_NOTE, cancel_jobs, newly_cancelled
from kolors_tryon.store import SchemaOutdated, open_store
from kolors_tryon.store.lifecycle import CancelOutcome

__all__ = ["cancel_command", "deadline_argument"]

_COLOURS = {
    CancelOutcome.CANCELLED: "green",
    CancelOutcome.AT_KLING: "yellow",
    CancelOutcome.ENDED: "cyan",
    CancelOutcome.NOT_FOUND: "red",
}
_WORDS = {
    CancelOutcome.CANCELLED: "cancelled: no create was sent, none will be",
    CancelOutcome.AT_KLING: AT_KLING_NOTE,
    CancelOutcome.ENDED: "already ended: nothing to cancel",
    CancelOutcome.NOT_FOUND: "no such job",
}


def deadline_argument(text: str | None) -> str | float | None:
    """`--deadline`: a number is seconds after acceptance, anything else an instant
    (the job message's validation says what is wrong with either)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cancel_command(job_ids: tuple[str, ...], as_json: bool) -> None:
    """Cancel jobs that have not reached Kling; exit 0 when every one was cancelled.

    A job whose create may already be at Kling cannot be stopped (the API has no
    cancel): it is named, runs to its end and is charged.
    """
    try:
        settings = load_settings()
        store = open_store(settings)
    except (SettingsError, SchemaOutdated) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    try:
        answers = cancel_jobs(store, job_ids)
    finally:
        store.dispose()
    cancelled = newly_cancelled(answers)
    if cancelled:
        _announce(settings, cancelled)
    if as_json:
        rows = [
            {
                "job_id": a.job_id,
                "outcome": a.outcome.value,
                "state": a.record.state.value if a.record else None,
                "charged": a.outcome is CancelOutcome.AT_KLING,
            }
            for a in answers
        ]
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
    else:
        for a in answers:
            click.echo(f"{a.job_id}  " + click.style(_WORDS[a.outcome], fg=_COLOURS[a.outcome]))
    sys.exit(0 if len(cancelled) == len(answers) else 1)


def _announce(settings: Settings, job_ids: list[str]) -> None:
    """One `tryon.cancelled` message: the workers publish the events and webhooks."""
    # Sends by task name only (as `tryon web` does): the configuration, no tasks.
    app = Celery("kolors_tryon.cli", set_as_current=False)
    app.conf.update(celery_config(settings))
    try:
        app.send_task(TaskName.CANCELLED, args=[job_ids])
    except Exception as exc:  # the cancel stands; the sweep plans the webhooks
        click.secho(f"warning: the workers were not told ({type(exc).__name__})", err=True)
    finally:
        app.close()
