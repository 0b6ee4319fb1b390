"""`tryon submit` and `tryon batch`: check jobs as the worker would, then publish them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from kolors_tryon.cli import door
from kolors_tryon.cli.following import follow_to_end
from kolors_tryon.cli.lifecycle import deadline_argument
from kolors_tryon.config import Settings
from kolors_tryon.config.defaults import WAIT_TIMEOUT
from kolors_tryon.jobs import (
    ImageSourceError,
    JobRejected,
    Problem,
    ValidationOptions,
    image_argument,
    read_batch,
    with_image_files_read,
)
from kolors_tryon.jobs.local import BatchLine, check_batch, check_job
from kolors_tryon.producer import JobPublisher

__all__ = ["batch", "checked_lines", "submit"]

# The `--timeout` of `--wait`, the same on both commands.
wait_timeout_option = click.option(
    "--timeout", type=float, default=WAIT_TIMEOUT, show_default=True, help="For --wait."
)


def _print_problems(where: str, problems: Iterable[Problem]) -> None:
    """Each problem on a line of stderr as `where: field: message`."""
    for problem in problems:
        click.secho(f"{where}: {problem}", fg="red", err=True)


@click.command()
@click.option("--human", "human", required=True, help="Photo of the person: file or URL.")
@click.option("--cloth", "cloth", required=True, help="Garment photo: file or URL.")
@click.option("--model", "model_name", default=None, help="kolors-virtual-try-on-v1[-5].")
@click.option("--job-id", default=None, help="Your id for the job (default: from content).")
@click.option("--callback-url", default=None, help="Your webhook URL: the signed job record.")
@click.option(
    "--webhook-events",
    default=None,
    help="States that send a webhook, comma-separated (default: the terminal ones).",
)
@click.option("--priority", type=int, default=None, help="0-9, higher first.")
@click.option("--metadata", default=None, help="A JSON object kept with the job.")
@click.option(
    "--deadline",
    default=None,
    help="Cancel the job if not at Kling by then: an ISO 8601 instant, or seconds.",
)
@click.option("--wait", is_flag=True, help="Follow the job to its end.")
@wait_timeout_option
@door.json_option
def submit(
    human: str,
    cloth: str,
    model_name: str | None,
    job_id: str | None,
    callback_url: str | None,
    webhook_events: str | None,
    priority: int | None,
    metadata: str | None,
    deadline: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue one job and print its job id."""
    settings = door.command_settings()
    message: dict[str, Any] = {}
    unreadable = []
    arguments = (("human_image", "--human", human), ("cloth_image", "--cloth", cloth))
    for field, option, value in arguments:
        try:
            message[field] = image_argument(value)
        except ImageSourceError as exc:
            unreadable.append(Problem(f"{field} ({option})", "file_not_found", str(exc)))
    if unreadable:
        _print_problems("error", unreadable)
        door.fail("nothing published")
    optional = {
        "model_name": model_name,
        "job_id": job_id,
        "callback_url": callback_url,
        "webhook_events": webhook_events and [e.strip() for e in webhook_events.split(",")],
        "priority": priority,
        "deadline": deadline_argument(deadline),
    }
    message.update({key: value for key, value in optional.items() if value is not None})
    if metadata is not None:
        try:
            message["metadata"] = json.loads(metadata)
        except json.JSONDecodeError as exc:
            door.fail(f"--metadata: not valid JSON ({exc.msg})")
    try:
        check_job(message, ValidationOptions.from_settings(settings))
    except JobRejected as rejection:
        _print_problems("error", rejection.problems)
        door.fail("invalid job, nothing published (`tryon validate` shows the same checks)")
    door.say_fallbacks(settings)
    # The publisher reads the store once (the secret that signs the producer): its errors
    # end in one line too.
    with door.store_errors(), door.reaching_broker(settings), JobPublisher(settings) as publisher:
        new_id = publisher.publish(message)
    if not wait:
        door.emit({"job_id": new_id}) if as_json else click.echo(new_id)
        return
    if not as_json:
        click.echo(f"job {new_id} enqueued; waiting for it to end...")
    follow_to_end(settings, [new_id], timeout, as_json)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid lines and list the invalid ones (default: publish nothing).",
)
@click.option("--wait", is_flag=True, help="Follow every job to its end.")
@wait_timeout_option
@door.json_option
def batch(file: Path, skip_invalid: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Enqueue every job of a JSON Lines or CSV file (image paths relative to the file).

    Every line is checked first, as `tryon validate` checks it: with an invalid line,
    nothing is published (exit 2) unless --skip-invalid.
    """
    settings = door.command_settings()
    lines = checked_lines(file, settings, show=not as_json)
    invalid = [line for line in lines if not line.valid]
    problems = [f"{file.name}:{line.number}: {p}" for line in invalid for p in line.problems]
    valid_lines = {line.number for line in lines if line.valid}
    if invalid and (not skip_invalid or not valid_lines):
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        if as_json:
            door.emit({"job_ids": [], "skipped": [], "invalid": problems})
        door.fail(
            f"{len(invalid)} invalid line(s) of {len(lines)}: nothing published"
            + ("" if skip_invalid else " (--skip-invalid publishes the valid ones)")
        )
    door.say_fallbacks(settings)
    job_ids = _publish_lines(file, valid_lines, settings, show=not as_json)
    for problem in problems:
        click.secho(f"skipped {problem}", fg="yellow", err=True)
    if not wait:
        if as_json:
            door.emit({"job_ids": job_ids, "skipped": problems})
        else:
            click.echo("\n".join(job_ids))
        return
    follow_to_end(settings, job_ids, timeout, as_json)


def checked_lines(file: Path, settings: Settings, *, show: bool) -> list[BatchLine]:
    """Every line of a batch file checked locally (files read, nothing published)."""
    options = ValidationOptions.from_settings(settings)
    with click.progressbar(
        check_batch(file, options), label="checking", file=sys.stderr, hidden=not show
    ) as bar:
        return list(bar)


def _publish_lines(file: Path, numbers: set[int], settings: Settings, *, show: bool) -> list[str]:
    """Publish the lines of `file` numbered `numbers` (checked already); their job ids."""
    job_ids: list[str] = []
    entries = [(n, e) for n, e in read_batch(file) if n in numbers and isinstance(e, dict)]
    with (
        door.store_errors(),
        door.reaching_broker(settings),
        JobPublisher(settings) as publisher,
        click.progressbar(entries, label="enqueueing", file=sys.stderr, hidden=not show) as bar,
    ):
        for number, entry in bar:
            try:
                message = with_image_files_read(entry, file.parent)
            except ImageSourceError as exc:  # removed since it was checked
                door.fail(f"{file.name}:{number}: {exc}; published {len(job_ids)} job(s) before it")
            job_ids.append(publisher.publish(message))
    return job_ids
