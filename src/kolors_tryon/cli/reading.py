"""Reading the job store: `tryon status`, `tryon jobs` and `tryon results url`."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from kolors_tryon.cli import door
from kolors_tryon.cli.following import describe
from kolors_tryon.cli.lifecycle import created_range_options
from kolors_tryon.config.defaults import LIST_LIMIT, PRESIGN_EXPIRES, PRESIGN_EXPIRES_MAX
from kolors_tryon.errors import JobNotFound
from kolors_tryon.store import JobState
from kolors_tryon.store.listing import JobFilter

__all__ = ["jobs", "results", "status"]


@click.command()
@click.argument("job_id")
@door.json_option
def status(job_id: str, as_json: bool) -> None:
    """Show one job's record."""
    settings = door.command_settings()
    door.say_fallbacks(settings, broker=False)
    with door.opened_store(settings) as store:
        record = store.get(job_id, settings.producer)
        if record is None:
            raise JobNotFound(job_id)
    if as_json:
        door.emit(record.to_json_dict())
    else:
        click.echo(describe(record))
        click.echo(
            f"    created {record.created_at}, updated {record.updated_at}, "
            f"create calls {record.attempts}"
        )


@click.command()
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None)
@click.option(
    "--meta",
    "meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only jobs whose metadata has KEY = VALUE (text); repeat for several.",
)
@click.option(
    "--after",
    "--cursor",
    "after",
    default=None,
    metavar="JOB_ID",
    help="Start after this job (the cursor the previous page printed).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=LIST_LIMIT, show_default=True)
@created_range_options
@door.json_option
def jobs(
    state: str | None,
    meta: tuple[str, ...],
    after: str | None,
    limit: int,
    created_from: float | None,
    created_before: float | None,
    as_json: bool,
) -> None:
    """List jobs, newest first, a page at a time (the next page: --after the cursor shown)."""
    settings = door.command_settings()
    filters = JobFilter(
        state=JobState(state) if state else None,
        metadata=_meta_filters(meta),
        created_from=created_from,
        created_before=created_before,
        producer=settings.producer,
    )
    door.say_fallbacks(settings, broker=False)
    with door.opened_store(settings) as store:
        cursor = None if after is None else store.listing.cursor_at(after, settings.producer)
        if after is not None and cursor is None:
            door.fail(f"--after: no job {after!r}", code=door.EXIT_FAILED)
        records = store.listing.page(filters, limit=limit, cursor=cursor).records
        counts = store.jobs.count_by_state()
    if as_json:
        door.emit([r.to_json_dict() for r in records])
    else:
        for record in records:
            click.echo(describe(record))
        click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
    if len(records) == limit:
        # The cursor is the page's last job id (in --json, the last record's job_id).
        options = [*(["--state", state] if state else []), *(f"--meta {m}" for m in meta)]
        again = " ".join(["tryon jobs", *options, "--after", records[-1].job_id])
        click.echo(f"more: {again}", err=True)


def _meta_filters(pairs: Iterable[str]) -> dict[str, str]:
    """`--meta sku=1234` options as a mapping, or exit 2 naming the malformed one."""
    filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            door.fail(f"--meta {pair!r}: give KEY=VALUE, e.g. --meta sku=1234")
        filters[key] = value
    return filters


@click.group()
def results() -> None:
    """Stored copies of result images (Kling deletes its own after 30 days)."""


@results.command("url")
@click.argument("job_id")
@click.option("--index", type=int, default=None, help="Only this image (default: every one).")
@click.option(
    "--expires",
    type=click.IntRange(1, PRESIGN_EXPIRES_MAX),
    default=PRESIGN_EXPIRES,
    show_default=True,
    help="Seconds a presigned S3 URL stays valid.",
)
@door.json_option
def results_url(job_id: str, index: int | None, expires: int, as_json: bool) -> None:
    """Print download URLs of a job's stored copies (presigned for S3, file:// for local)."""
    from kolors_tryon.pipeline.storage import StorageError, result_urls

    settings = door.command_settings()
    # result_urls opens the store itself, through the same schema check as door.opened_store.
    with door.store_errors():
        try:
            urls = result_urls(job_id, settings, expires=expires)
        except StorageError as exc:
            door.fail(str(exc), code=door.EXIT_FAILED)
    chosen = dict(enumerate(urls)) if index is None else {index: _at(urls, index)}
    if as_json:
        door.emit(
            {"job_id": job_id, "expires": expires, "urls": [chosen[i] for i in sorted(chosen)]}
        )
    else:
        for number in sorted(chosen):
            click.echo(chosen[number] or f"image {number}: no stored copy (yet)")
    sys.exit(0 if chosen and all(chosen.values()) else 1)


def _at(urls: list[str | None], index: int) -> str | None:
    if not 0 <= index < len(urls):
        door.fail(f"the job has {len(urls)} image(s); no index {index}", code=door.EXIT_FAILED)
    return urls[index]
