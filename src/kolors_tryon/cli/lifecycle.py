"""The job lifecycle's commands: `tryon cancel JOB...`, `tryon retry JOB...` (and the
`--deadline` of submit).

A module of its own, registered on the main group with one line, so that it moves into
the CLI package as it is. The answers come from the store's fenced move
(`pipeline.lifecycle.cancel_jobs`); the events and webhooks of the cancelled jobs go to
the workers as one `tryon.cancelled` message.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NoReturn

import click
from celery import Celery

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.celery import celery_config
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.errors import JobNotFound
from kolors_tryon.jobs import ImageSourceError, JobRejected, ValidationOptions, image_argument
from kolors_tryon.jobs.local import check_job
from kolors_tryon.pipeline.lifecycle import (
    AT_KLING_NOTE,
    RetryPlan,
    RetryRefused,
    cancel_jobs,
    newly_cancelled,
    plan_retry,
    retry_estimate,
)
from kolors_tryon.producer import JobPublisher
from kolors_tryon.store import SchemaOutdated, open_store
from kolors_tryon.store.lifecycle import CancelOutcome

__all__ = ["cancel_command", "created_range_options", "deadline_argument", "retry_command"]

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


def _instant_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """An ISO 8601 instant with its offset, as Unix seconds."""
    if value is None:
        return None
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("give an ISO 8601 instant, e.g. 2026-12-08T18:00:00Z") from None
    if instant.tzinfo is None:
        raise click.BadParameter("give the instant's offset, e.g. Z or +02:00")
    return instant.timestamp()


def created_range_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--created-from` and `--created-before` (ISO 8601 instants) of a listing."""
    before = click.option(
        "--created-before",
        default=None,
        callback=_instant_option,
        help="Only jobs created before this instant.",
    )
    since = click.option(
        "--created-from",
        default=None,
        callback=_instant_option,
        help="Only jobs created at or after this instant (ISO 8601, e.g. 2026-12-08T00:00Z).",
    )
    return since(before(command))


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
        _stop(str(exc))
    try:
        answers = cancel_jobs(store, job_ids, settings.producer)
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


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB_ID...")
@click.option("--human", default=None, help="Another photo of the person: file or URL.")
@click.option("--cloth", default=None, help="Another garment photo: file or URL.")
@click.option("--yes", is_flag=True, help="Go ahead with a retry of several jobs.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def retry_command(
    job_ids: tuple[str, ...], human: str | None, cloth: str | None, yes: bool, as_json: bool
) -> None:
    """Retry failed, rejected or cancelled jobs: a new job each, linked by `retry_of`,
    with the same metadata (and photos, unless --human/--cloth give others).

    Several jobs: the answer first says how many units they may spend, and nothing is
    sent without --yes. Exit 0 when every job was retried, 1 otherwise.
    """
    try:
        settings = load_settings()
        photos = {
            key: image_argument(value)
            for key, value in (("human", human), ("cloth", cloth))
            if value is not None
        }
    except (SettingsError, ImageSourceError) as exc:
        _stop(str(exc))
    try:
        store = open_store(settings)
    except SchemaOutdated as exc:
        _stop(str(exc))
    plans: list[RetryPlan] = []
    refused: dict[str, str] = {}
    try:
        for job_id in dict.fromkeys(job_ids):
            try:
                plans.append(plan_retry(store, job_id, producer=settings.producer, **photos))
            except (JobNotFound, RetryRefused) as exc:
                refused[job_id] = str(exc)
    finally:
        store.dispose()
    estimate = retry_estimate(plans)
    if len(plans) > 1 and not yes:
        _retry_report(plans, refused, estimate, as_json, sent=False)
        click.secho("nothing sent: add --yes to retry them", fg="yellow", err=True)
        sys.exit(1 if refused else 0)
    options = ValidationOptions.from_settings(settings)
    for plan in list(plans):
        try:
            check_job(plan.message, options)
        except JobRejected as rejection:
            refused[plan.retry_of] = rejection.reason
            plans.remove(plan)
    with JobPublisher(settings) as publisher:
        for plan in plans:
            publisher.publish(plan.message)
    _retry_report(plans, refused, estimate, as_json, sent=True)
    sys.exit(1 if refused else 0)


def _retry_report(
    plans: list[RetryPlan], refused: dict[str, str], estimate: str, as_json: bool, *, sent: bool
) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "estimate": estimate,
                    "sent": sent,
                    "retries": [{"retry_of": p.retry_of, "job_id": p.job_id} for p in plans],
                    "refused": refused,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return
    click.echo(estimate)
    for plan in plans:
        verb = "retried as" if sent else "would be retried as"
        click.echo(f"{plan.retry_of}  {verb} {plan.job_id}")
    for job_id, reason in refused.items():
        click.secho(f"{job_id}  not retried: {reason}", fg="red")


def _stop(message: str) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)
