"""`tryon batches`: a producer's batches, and one batch's progress.

Its own module (registered on the main group with one line in cli.py), so that the
commands move with the CLI wherever it goes. They read as TRYON_PRODUCER: another
producer's batch is not found.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.jobs import JobRejected, ValidationOptions
from kolors_tryon.jobs.batch import read_batch, with_image_files_read
from kolors_tryon.jobs.local import check_job
from kolors_tryon.ops.batch_export import batch_csv
from kolors_tryon.ops.estimate import estimate
from kolors_tryon.store import BatchRecord, open_store

POLL_SECONDS = 1.0


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _line(batch: BatchRecord) -> str:
    counts = ", ".join(f"{state} {n}" for state, n in sorted(batch.counts.items()))
    done = "complete" if batch.finished_at else f"{batch.progress:.0%}"
    return f"{batch.batch_id}  {done}  {batch.jobs} jobs ({counts})  {batch.units_spent:g} units"


@click.group(invoke_without_command=True)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--after", metavar="BATCH_ID", help="Start after this batch (the cursor shown).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def batches(ctx: click.Context, limit: int, after: str | None, as_json: bool) -> None:
    """List your batches, newest first (`tryon batches status ID` follows one)."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    store = open_store(settings)
    try:
        page = store.batches.page(settings.producer, limit=limit, after=after)
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps([b.model_dump(mode="json") for b in page], indent=2))
        return
    for batch in page:
        click.echo(_line(batch))
    if len(page) == limit:
        click.echo(f"next: tryon batches --after {page[-1].batch_id}", err=True)


@batches.command()
@click.argument("batch_id")
@click.option("--wait", is_flag=True, help="Follow it with a progress bar until complete.")
@click.option("--timeout", type=float, default=3600.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(batch_id: str, wait: bool, timeout: float, as_json: bool) -> None:
    """One batch: counts by state, units spent, progress (exit 1 if unknown)."""
    settings = _settings()
    store = open_store(settings)
    try:
        batch = store.batches.get(settings.producer, batch_id)
        if batch is None:
            click.echo(f"error: no batch {batch_id!r}", err=True)
            sys.exit(1)
        if wait:
            deadline = time.monotonic() + timeout
            with click.progressbar(
                length=max(batch.jobs, 1), label="finished", file=sys.stderr
            ) as bar:
                shown = 0
                while batch.finished_at is None and time.monotonic() < deadline:
                    time.sleep(POLL_SECONDS)
                    batch = store.batches.get(settings.producer, batch_id) or batch
                    ended = round(batch.progress * batch.jobs)
                    bar.length = max(batch.jobs, 1)
                    bar.update(ended - shown)
                    shown = ended
    finally:
        store.dispose()
    if as_json:
        click.echo(json.dumps(batch.model_dump(mode="json"), indent=2))
    else:
        click.echo(_line(batch))
    if wait and batch.finished_at is None:
        sys.exit(2)


@batches.command()
@click.argument("batch_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
def export(batch_id: str, output: str | None) -> None:
    """One batch as CSV: job id, state, error, units, metadata, result locations."""
    settings = _settings()
    store = open_store(settings)
    try:
        if store.batches.get(settings.producer, batch_id) is None:
            click.echo(f"error: no batch {batch_id!r}", err=True)
            sys.exit(1)
        text = batch_csv(store.batches.jobs(settings.producer, batch_id))
    finally:
        store.dispose()
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")


@batches.command(name="estimate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def estimate_command(file: Path, as_json: bool) -> None:
    """Before sending FILE (JSON Lines or CSV): jobs, units, cost, expected duration."""
    settings = _settings()
    options = ValidationOptions.from_settings(settings)
    valid = invalid = 0
    for _number, entry in read_batch(file):
        if isinstance(entry, str):
            invalid += 1
            continue
        try:
            check_job(with_image_files_read(entry, file.parent), options)
        except (JobRejected, ValueError):
            invalid += 1
            continue
        valid += 1
    result = estimate(valid, invalid, settings)
    if as_json:
        click.echo(json.dumps(result.to_json_dict(), indent=2))
        return
    minutes = result.seconds / 60
    click.echo(
        f"{result.jobs} jobs ({result.invalid} invalid, free), {result.units:g} units, "
        f"{result.cost:.2f} at {result.unit_price:g} per unit, about {minutes:.1f} min "
        f"at {result.max_in_flight} at once"
    )
