"""The `tryon` command: run workers, put jobs on the queue, read their records."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from kombu import Connection
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import SQLAlchemyError

from kolors_tryon.cli_batches import batches as batches_group
from kolors_tryon.cli_checks import (
    broker_problem,
    broker_refusal,
    embedded_fallbacks,
    unknown_variables,
)
from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.defaults import (
    COPY_WAIT,
    DEMO_TIMEOUT,
    LIST_LIMIT,
    PING_TIMEOUT,
    PRESIGN_EXPIRES,
    PRESIGN_EXPIRES_MAX,
    WAIT_TIMEOUT,
)
from kolors_tryon.config.env_example import render_configuration_reference, render_env_example
from kolors_tryon.emulator.command import emulator_command
from kolors_tryon.jobs import (
    ImageSourceError,
    JobRejected,
    Problem,
    ValidationOptions,
    image_argument,
    job_json_schema,
    read_batch,
    validate_job,
    with_image_files_read,
)
from kolors_tryon.jobs.local import BatchLine, check_batch, check_job
from kolors_tryon.kling import redact
from kolors_tryon.producer import JobPublisher
from kolors_tryon.store import (
    JobRecord,
    JobState,
    JobStore,
    SchemaOutdated,
    SchemaStatus,
    open_store,
)
from kolors_tryon.store.migrate import new_revision, schema_status, upgrade_schema

EXIT_INVALID = 2
# Suffixes `tryon validate` reads as batch files, line by line, as `tryon batch` does.
BATCH_SUFFIXES = (".jsonl", ".ndjson", ".csv")


def _settings() -> Settings:
    for warning in unknown_variables(os.environ):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    try:
        return load_settings()
    except SettingsError as exc:
        _fail(str(exc))


def _say_fallbacks(settings: Settings, *, broker: bool = True, store: bool = True) -> None:
    """One line on stderr when the command uses the embedded broker or store."""
    line = embedded_fallbacks(settings, broker=broker, store=store)
    if line is not None:
        click.secho(f"note: {line}", fg="cyan", err=True)


@contextmanager
def _reaching_broker(settings: Settings) -> Iterator[None]:
    """Turn a broker that refuses us, or does not answer, into one line and exit 1."""
    try:
        yield
    except (OSError, ConnectionError, KombuOperationalError) as exc:
        line = broker_refusal(exc, settings)
        if line is None:
            where = Connection(settings.effective_broker_url).as_uri()
            # Redacted: a driver's message may quote the URL, password included.
            reason = redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
            line = f"the broker of TRYON_BROKER_URL ({where}) does not answer: {reason}"
        _fail(line, code=1)
    except Exception as exc:
        line = broker_refusal(exc, settings)
        if line is None:
            raise
        _fail(line, code=1)


def _print_problems(where: str, problems: Iterable[Problem]) -> list[str]:
    """Each problem on a line of stderr as `where: field: message`; returns the lines."""
    lines = [f"{where}: {problem}" for problem in problems]
    for line in lines:
        click.secho(line, fg="red", err=True)
    return lines


def _fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _open_store(settings: Settings) -> JobStore:
    """The job store, or exit 1 saying what to run when its schema is not this code's."""
    try:
        return open_store(settings)
    except SchemaOutdated as exc:
        _fail(str(exc), code=1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kolors-tryon: try-on jobs from RabbitMQ to the Kling Kolors Virtual Try-On API."""


main.add_command(emulator_command, name="emulator")
main.add_command(batches_group, name="batches")


# ----------------------------------------------------------------------------- worker
@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a worker; extra arguments go to Celery's worker (e.g. --concurrency 4)."""
    from kolors_tryon.worker.launcher import run_worker

    settings = _settings()
    _say_fallbacks(settings)
    refused = broker_problem(settings)
    if refused is not None:
        _fail(refused, code=1)
    run_worker(settings, list(celery_args))


# ----------------------------------------------------------------------------- flower
@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    """Run Flower on this deployment's workers and tasks (the [flower] extra); extra
    arguments go to Flower (e.g. --port=5555)."""
    from kolors_tryon.worker.launcher import run_flower

    run_flower(_settings(), list(flower_args))


@main.command()
@click.option(
    "--this-host",
    is_flag=True,
    help="Only workers of this machine (in a container: this container's worker).",
)
@click.option("--timeout", type=float, default=PING_TIMEOUT, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def ping(this_host: bool, timeout: float, as_json: bool) -> None:
    """Ping the namespace's workers; exit 0 when one answers, 1 when none does.

    Through the namespace's control exchange, where the workers listen (`celery inspect
    ping` with a bare broker URL asks Celery's default one). The workers' container
    health check runs `tryon ping --this-host`.
    """
    from kolors_tryon.kling import redact
    from kolors_tryon.worker.nodes import on_this_host, ping_workers

    settings = _settings()
    if not settings.uses_rabbitmq:
        _fail(
            "tryon ping needs RabbitMQ (TRYON_BROKER_URL): an embedded broker has no remote "
            "control",
            1,
        )
    try:
        nodes = ping_workers(settings, timeout)
    except Exception as exc:
        _fail(f"cannot reach the broker: {type(exc).__name__}: {redact(str(exc))}", 1)
    if this_host:
        nodes = on_this_host(nodes)
    if as_json:
        _emit({"namespace": settings.namespace, "nodes": nodes})
    elif nodes:
        for node in nodes:
            click.echo(f"{node}: pong")
    else:
        where = " on this host" if this_host else ""
        click.echo(
            f"no worker of namespace {settings.namespace!r} answered{where} in {timeout:g} s"
        )
    sys.exit(0 if nodes else 1)


# ----------------------------------------------------------------------------- web
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="TCP port.")
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=True,
    show_default=True,
    help="Trust X-Forwarded-* from --forwarded-allow-ips (a TLS-terminating proxy).",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    help="Proxy addresses to trust, comma-separated ('*': any); default 127.0.0.1.",
)
def web(host: str, port: int, proxy_headers: bool, forwarded_allow_ips: str | None) -> None:
    """Run the HTTP service: job intake, job records, Kling callbacks, /healthz, /readyz."""
    from kolors_tryon.web import serve

    serve(
        _settings(),
        host=host,
        port=port,
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
    )


# ----------------------------------------------------------------------------- submit
@main.command()
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
@click.option("--wait", is_flag=True, help="Follow the job to its end.")
@click.option("--timeout", type=float, default=WAIT_TIMEOUT, show_default=True, help="For --wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def submit(
    human: str,
    cloth: str,
    model_name: str | None,
    job_id: str | None,
    callback_url: str | None,
    webhook_events: str | None,
    priority: int | None,
    metadata: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Enqueue one job and print its job id."""
    settings = _settings()
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
        _fail("nothing published")
    optional = {
        "model_name": model_name,
        "job_id": job_id,
        "callback_url": callback_url,
        "webhook_events": webhook_events and [e.strip() for e in webhook_events.split(",")],
        "priority": priority,
    }
    message.update({key: value for key, value in optional.items() if value is not None})
    if metadata is not None:
        try:
            message["metadata"] = json.loads(metadata)
        except json.JSONDecodeError as exc:
            _fail(f"--metadata: not valid JSON ({exc.msg})")
    try:
        check_job(message, ValidationOptions.from_settings(settings))
    except JobRejected as rejection:
        _print_problems("error", rejection.problems)
        _fail("invalid job, nothing published (`tryon validate` shows the same checks)")
    _say_fallbacks(settings)
    with _reaching_broker(settings), JobPublisher(settings) as publisher:
        new_id = publisher.publish(message)
    if not wait:
        _emit({"job_id": new_id}) if as_json else click.echo(new_id)
        return
    if not as_json:
        click.echo(f"job {new_id} enqueued; waiting for it to end...")
    records = _wait_for(settings, [new_id], timeout, show=not as_json)
    _report(records, as_json)
    sys.exit(0 if all(r.state is JobState.SUCCEEDED for r in records) else 1)


# ----------------------------------------------------------------------------- batch
@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Publish the valid lines and list the invalid ones (default: publish nothing).",
)
@click.option("--wait", is_flag=True, help="Follow every job to its end.")
@click.option("--timeout", type=float, default=WAIT_TIMEOUT, show_default=True, help="For --wait.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def batch(file: Path, skip_invalid: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Enqueue every job of a JSON Lines or CSV file (image paths relative to the file).

    Every line is checked first, as `tryon validate` checks it: with an invalid line,
    nothing is published (exit 2) unless --skip-invalid.
    """
    settings = _settings()
    lines = _checked_lines(file, settings, show=not as_json)
    invalid = [line for line in lines if not line.valid]
    problems = [f"{file.name}:{line.number}: {p}" for line in invalid for p in line.problems]
    valid_lines = {line.number for line in lines if line.valid}
    if invalid and (not skip_invalid or not valid_lines):
        for problem in problems:
            click.secho(problem, fg="red", err=True)
        if as_json:
            _emit({"job_ids": [], "skipped": [], "invalid": problems})
        _fail(
            f"{len(invalid)} invalid line(s) of {len(lines)}: nothing published"
            + ("" if skip_invalid else " (--skip-invalid publishes the valid ones)")
        )
    _say_fallbacks(settings)
    job_ids = _publish_lines(file, valid_lines, settings, show=not as_json)
    for problem in problems:
        click.secho(f"skipped {problem}", fg="yellow", err=True)
    if not wait:
        if as_json:
            _emit({"job_ids": job_ids, "skipped": problems})
        else:
            click.echo("\n".join(job_ids))
        return
    records = _wait_for(settings, job_ids, timeout, show=not as_json)
    _report(records, as_json)
    sys.exit(0 if all(r.state is JobState.SUCCEEDED for r in records) else 1)


def _checked_lines(file: Path, settings: Settings, *, show: bool) -> list[BatchLine]:
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
        _reaching_broker(settings),
        JobPublisher(settings) as publisher,
        click.progressbar(entries, label="enqueueing", file=sys.stderr, hidden=not show) as bar,
    ):
        for number, entry in bar:
            try:
                message = with_image_files_read(entry, file.parent)
            except ImageSourceError as exc:  # removed since it was checked
                _fail(f"{file.name}:{number}: {exc}; published {len(job_ids)} job(s) before it")
            job_ids.append(publisher.publish(message))
    return job_ids


# ----------------------------------------------------------------------------- waiting
def _wait_for(
    settings: Settings, job_ids: Sequence[str], timeout: float, *, show: bool
) -> list[JobRecord]:
    """Poll the store until every job is terminal (or the timeout), showing progress."""
    store = _open_store(settings)
    unique = list(dict.fromkeys(job_ids))
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    copies_by: float | None = None
    try:
        with click.progressbar(
            length=len(unique), label="finished", file=sys.stderr, hidden=not show
        ) as bar:
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
    finally:
        store.dispose()


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


def _report(records: Iterable[JobRecord], as_json: bool) -> None:
    records = list(records)
    if as_json:
        _emit([r.to_json_dict() for r in records])
        return
    for record in records:
        click.echo(_describe(record))


def _describe(record: JobRecord) -> str:
    colour = {"succeeded": "green", "failed": "red", "rejected": "yellow"}.get(record.state)
    line = f"{record.job_id}  {click.style(str(record.state), fg=colour)}"
    if record.kling_task_id:
        line += f"  task {record.kling_task_id}"
    for image in record.images:
        line += f"\n    image {image.index}: {image.stored or image.url}"
    if record.error:
        line += f"\n    {record.error.code}: {record.error.message}"
    return line


# ----------------------------------------------------------------------------- checks
@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(file: Path, as_json: bool) -> None:
    """Check a job (JSON) offline exactly as the worker does: exit 0 valid, 2 invalid.

    A .jsonl, .ndjson or .csv file is a batch: each line is checked as `tryon batch`
    checks it (image paths read relative to the file), and every problem is listed.
    """
    settings = _settings()
    if file.suffix.lower() in BATCH_SUFFIXES:
        _validate_batch(file, settings, as_json)
    try:
        valid = validate_job(file.read_bytes(), ValidationOptions.from_settings(settings))
    except JobRejected as rejection:
        problems = [
            {"field": p.field, "rule": p.rule, "message": p.message} for p in rejection.problems
        ]
        if as_json:
            _emit({"valid": False, "job_id": rejection.job_id, "problems": problems})
        else:
            click.secho(f"invalid: {file}", fg="red")
            for problem in rejection.problems:
                click.echo(f"  {problem}")
        sys.exit(EXIT_INVALID)
    images = {
        name: info
        and {
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "bytes": info.size_bytes,
        }
        for name, info in (("human_image", valid.human), ("cloth_image", valid.cloth))
    }
    if as_json:
        _emit({"valid": True, "job_id": valid.job_id, "images": images})
    else:
        click.secho(f"valid: job {valid.job_id}", fg="green")
        for name, info in images.items():
            click.echo(f"  {name}: {info or 'URL (not fetched: preflight is off)'}")


def _validate_batch(file: Path, settings: Settings, as_json: bool) -> NoReturn:
    """`tryon validate` of a batch file: a verdict per line, exit 0 all valid, 2 not."""
    lines = _checked_lines(file, settings, show=not as_json)
    invalid = [line for line in lines if not line.valid]
    if as_json:
        _emit(
            {
                "valid": not invalid,
                "lines": [
                    {
                        "line": line.number,
                        "job_id": line.job_id,
                        "valid": line.valid,
                        "problems": [
                            {"field": p.field, "rule": p.rule, "message": p.message}
                            for p in line.problems
                        ],
                    }
                    for line in lines
                ],
            }
        )
    else:
        for line in lines:
            if line.valid:
                click.echo(f"{file.name}:{line.number}: valid: job {line.job_id}")
            for problem in line.problems:
                click.secho(f"{file.name}:{line.number}: {problem}", fg="red")
        verdict = f"{len(lines) - len(invalid)} valid, {len(invalid)} invalid line(s)"
        click.secho(verdict, fg="red" if invalid else "green")
    sys.exit(EXIT_INVALID if invalid else 0)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the job message."""
    _emit(job_json_schema())


# ----------------------------------------------------------------------------- health
@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def health(as_json: bool) -> None:
    """Check the broker, the job store and the Kling credentials; exit 0 healthy, 1 not.

    Also reads the account's remaining units (a warning when low, unknown where the API
    lacks GET /account/costs). The container health check of the workers runs this.
    """
    from kolors_tryon.ops.health import Status, check_health

    report = check_health(_settings())
    if as_json:
        _emit(report.to_json_dict())
    else:
        colours = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}
        for check in report.checks:
            mark = click.style(f"{check.status:<4}", fg=colours[check.status], bold=True)
            click.echo(f"{mark} {check.name}: {check.detail}")
        click.echo("healthy" if report.healthy else "UNHEALTHY")
    sys.exit(0 if report.healthy else 1)


# ----------------------------------------------------------------------------- reading
@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(job_id: str, as_json: bool) -> None:
    """Show one job's record."""
    settings = _settings()
    _say_fallbacks(settings, broker=False)
    store = _open_store(settings)
    record = store.get(job_id, settings.producer)
    store.dispose()
    if record is None:
        _fail(f"no job {job_id!r}", code=1)
    if as_json:
        _emit(record.to_json_dict())
    else:
        click.echo(_describe(record))
        click.echo(
            f"    created {record.created_at}, updated {record.updated_at}, "
            f"create calls {record.attempts}"
        )


@main.command()
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def jobs(
    state: str | None, meta: tuple[str, ...], after: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first, a page at a time (the next page: --after the cursor shown)."""
    metadata = _meta_filters(meta)
    settings = _settings()
    _say_fallbacks(settings, broker=False)
    store = _open_store(settings)
    try:
        if after is not None and store.get(after, settings.producer) is None:
            _fail(f"--after: no job {after!r}", code=1)
        records = store.jobs.page(
            JobState(state) if state else None,
            limit=limit,
            after=after,
            metadata=metadata,
            producer=settings.producer,
        )
        counts = store.jobs.count_by_state()
    finally:
        store.dispose()
    if as_json:
        _emit([r.to_json_dict() for r in records])
    else:
        for record in records:
            click.echo(_describe(record))
        click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no jobs")
    if len(records) == limit:
        # The cursor is the page's last job id (in --json, the last record's job_id).
        filters = [*(["--state", state] if state else []), *(f"--meta {m}" for m in meta)]
        again = " ".join(["tryon jobs", *filters, "--after", records[-1].job_id])
        click.echo(f"more: {again}", err=True)


def _meta_filters(pairs: Iterable[str]) -> dict[str, str]:
    """`--meta sku=1234` options as a mapping, or exit 2 naming the malformed one."""
    filters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--meta {pair!r}: give KEY=VALUE, e.g. --meta sku=1234")
        filters[key] = value
    return filters


# ----------------------------------------------------------------------------- results
@main.group()
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
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def results_url(job_id: str, index: int | None, expires: int, as_json: bool) -> None:
    """Print download URLs of a job's stored copies (presigned for S3, file:// for local)."""
    from kolors_tryon.pipeline.storage import StorageError, result_urls

    try:
        urls = result_urls(job_id, _settings(), expires=expires)
    except LookupError:
        _fail(f"no job {job_id!r}", code=1)
    except StorageError as exc:
        _fail(str(exc), code=1)
    chosen = dict(enumerate(urls)) if index is None else {index: _at(urls, index)}
    if as_json:
        _emit({"job_id": job_id, "expires": expires, "urls": [chosen[i] for i in sorted(chosen)]})
    else:
        for number in sorted(chosen):
            click.echo(chosen[number] or f"image {number}: no stored copy (yet)")
    sys.exit(0 if chosen and all(chosen.values()) else 1)


def _at(urls: list[str | None], index: int) -> str | None:
    if not 0 <= index < len(urls):
        _fail(f"the job has {len(urls)} image(s); no index {index}", code=1)
    return urls[index]


# ----------------------------------------------------------------------------- retention
@main.command()
@click.option(
    "--older-than",
    "days",
    type=click.FloatRange(min=0),
    required=True,
    help="Days since the job ended.",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def purge(days: float, dry_run: bool, as_json: bool) -> None:
    """Delete ended jobs (succeeded, failed, rejected) older than DAYS, copies included."""
    from kolors_tryon.pipeline.retention import purge as purge_jobs
    from kolors_tryon.pipeline.storage import ResultCopies

    settings = _settings()
    store = _open_store(settings)
    try:
        report = purge_jobs(store, ResultCopies(settings), older_than_days=days, dry_run=dry_run)
    finally:
        store.dispose()
    if as_json:
        _emit(report.to_json_dict())
    else:
        verb = "would delete" if dry_run else "deleted"
        states = ", ".join(f"{n} {s}" for s, n in sorted(report.jobs.items())) or "none"
        click.echo(f"{verb} {sum(report.jobs.values())} job(s) ({states}), {report.copies} copies")
        if report.kept:
            click.secho(
                f"kept {report.kept} job(s): their copies could not be deleted", fg="yellow"
            )
    sys.exit(1 if report.kept else 0)


@main.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def forget(job_id: str, as_json: bool) -> None:
    """Remove a person's photos from JOB_ID: copies, photos, URLs, metadata, messages.

    The record keeps its ids, states, times and error code. A queued job ends failed
    (code `forgotten`); a job in flight at Kling is left alone (exit 1): run it again once
    the job has ended. Running it twice is harmless.
    """
    from kolors_tryon.pipeline.retention import forget as forget_job
    from kolors_tryon.pipeline.storage import ResultCopies, StorageError

    settings = _settings()
    store = _open_store(settings)
    try:
        report = forget_job(store, ResultCopies(settings), job_id)
    except StorageError as exc:
        _fail(f"the record is cleared, but copies could not be deleted: {exc}; run again", 1)
    finally:
        store.dispose()
    if report is None:
        _fail(f"no job {job_id!r}", code=1)
    if as_json:
        _emit(report.to_json_dict())
    elif report.in_flight:
        click.secho(
            f"{job_id} is {report.state} at Kling: run forget again once it ended", fg="yellow"
        )
    else:
        extra = " (already forgotten)" if report.already_forgotten else ""
        payload = ", photos deleted" if report.payload_deleted else ""
        click.echo(f"{job_id} forgotten{extra}: {report.copies} copies deleted{payload}")
    sys.exit(1 if report.in_flight else 0)


# ----------------------------------------------------------------------------- webhooks
class _ListByDefault(click.Group):
    """`tryon webhooks JOB_ID` means `tryon webhooks list JOB_ID`: a group with a default."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_ListByDefault)
def webhooks() -> None:
    """Webhook deliveries: `tryon webhooks JOB_ID` (list), `replay`, `secret`."""


@webhooks.command("list")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def webhooks_list(job_id: str, as_json: bool) -> None:
    """Show a job's webhook deliveries and every attempt of each."""
    from dataclasses import asdict

    from kolors_tryon.jobs.urls import redact_url

    store = _open_store(_settings())
    deliveries = store.webhooks.of_job(job_id)
    store.dispose()
    shown = [{**asdict(d), "url": redact_url(d.url)} for d in deliveries]
    if as_json:
        _emit(shown)
        return
    if not shown:
        click.echo(f"no webhook deliveries for job {job_id!r}")
        return
    for d in deliveries:
        colour = {"delivered": "green", "failed": "red", "gone": "red"}.get(d.status, "yellow")
        click.echo(
            f"{d.id}  {d.state:<10}  {click.style(d.status, fg=colour):<9}  "
            f"attempts {d.attempts}  {redact_url(d.url)}"
            + (f"  next {d.next_at}" if d.next_at else "")
        )
        click.echo(f"    {'at':<24}  {'status':>6}  {'ms':>6}  error")
        for a in d.history:
            code = str(a.status_code) if a.status_code is not None else "-"
            click.echo(f"    {a.at or '':<24}  {code:>6}  {a.duration_ms:>6}  {a.error or ''}")


@webhooks.command("replay")
@click.argument("delivery_id", required=False)
@click.option("--job", "job_id", default=None, help="Replay every failed delivery of this job.")
def webhooks_replay(delivery_id: str | None, job_id: str | None) -> None:
    """Send a failed (or gone, or skipped) delivery again, from the start of the schedule."""
    if (delivery_id is None) == (job_id is None):
        _fail("give a DELIVERY_ID or --job JOB_ID")
    from kolors_tryon.tasks.messaging import send_webhooks
    from kolors_tryon.worker import create_app

    settings = _settings()
    store = _open_store(settings)
    try:
        ids = [delivery_id] if delivery_id else store.webhooks.replayable(job_id or "")
        replayed = [d for d in ids if d is not None and store.webhooks.replay(d)]
    finally:
        store.dispose()
    if not replayed:
        _fail("nothing to replay: no such delivery, or it is pending or delivered", code=1)
    send_webhooks(create_app(settings), replayed)
    for d in replayed:
        click.echo(f"replaying {d}")


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print the whsec_ secret(s) webhooks are signed with (generated once if unset)."""
    from kolors_tryon.pipeline.webhooks import webhook_secrets

    settings = _settings()
    store = _open_store(settings)
    try:
        for secret in webhook_secrets(settings, store):
            click.echo(secret)
    finally:
        store.dispose()


# ----------------------------------------------------------------------------- demo
SAMPLES = Path(__file__).resolve().parent / "samples" / "jobs.jsonl"


@main.command()
@click.option(
    "--file",
    "jobs_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Jobs to run (default: the bundled sample jobs).",
)
@click.option("--timeout", type=float, default=DEMO_TIMEOUT, show_default=True)
@click.option(
    "--emulator-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Run the sandbox emulator on this local port (default: the port of "
    "TRYON_SANDBOX_EMULATOR_URL, 8765).",
)
def demo(jobs_file: Path | None, timeout: float, emulator_port: int | None) -> None:
    """Run the service's main job here: an emulator, a worker, the sample jobs, the results."""
    from kolors_tryon.worker.launcher import start_worker_process

    if emulator_port is not None:
        # The worker started below inherits this process's environment: same emulator.
        os.environ["TRYON_SANDBOX_EMULATOR_URL"] = f"http://127.0.0.1:{emulator_port}"
    settings = _settings()
    if not settings.sandbox:
        _fail(
            "demo runs in sandbox mode only: unset the TRYON_KLING_* credentials "
            "(it would spend real credits otherwise)"
        )
    emulator = _start_demo_emulator(settings)
    worker_log = settings.data_dir / "demo-worker.log"
    worker_process = start_worker_process(["--concurrency", "2"], worker_log)
    click.echo(f"started a worker (its log: {worker_log})")
    try:
        path = jobs_file or SAMPLES
        entries = [(n, e) for n, e in read_batch(path) if isinstance(e, dict)]
        with _reaching_broker(settings), JobPublisher(settings) as publisher:
            job_ids = []
            for number, entry in entries:
                try:
                    message = with_image_files_read(entry, path.parent)
                except ImageSourceError as exc:
                    click.secho(f"skipped {path.name}:{number}: {exc}", fg="yellow", err=True)
                    continue
                # Unchecked on purpose: the samples show a rejection at intake too.
                job_ids.append(publisher.publish(message))
        click.echo(f"enqueued {len(job_ids)} sample job(s) from {path}")
        records = _wait_for(settings, job_ids, timeout, show=True)
        click.echo()
        _report(records, as_json=False)
        finished = all(r.terminal for r in records)
    finally:
        worker_process.terminate()
        worker_process.wait(timeout=30)
        if emulator is not None:
            emulator.stop()
    sys.exit(0 if finished else 1)


def _start_demo_emulator(settings: Settings) -> Any:
    """The sandbox emulator of `tryon demo`, or exit 1 saying how to move a taken port."""
    from urllib.parse import urlsplit

    from kolors_tryon.worker.launcher import ensure_sandbox_emulator

    try:
        return ensure_sandbox_emulator(settings)
    except OSError as exc:
        port = urlsplit(settings.effective_kling_base_url).port
        _fail(
            f"the sandbox emulator cannot listen on port {port} ({exc.strerror or exc}): "
            f"another program holds it; run `tryon demo --emulator-port {(port or 8765) + 1}` "
            f"or set TRYON_SANDBOX_EMULATOR_URL=http://127.0.0.1:{(port or 8765) + 1}",
            code=1,
        )


# ----------------------------------------------------------------------------- db
@main.group()
def db() -> None:
    """The job store's schema: create, migrate, check (Alembic revisions in the package)."""


def _schema_store(settings: Settings) -> JobStore:
    """The configured store without any schema step (these commands are the schema step)."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return JobStore.from_url(settings.effective_database_url)


def _status_json(status: SchemaStatus) -> dict[str, Any]:
    return {"current": status.current, "head": status.head, "up_to_date": status.up_to_date}


@contextmanager
def _reaching_store() -> Iterator[None]:
    """Turn an unreachable store into one line and exit 1 (no URL: it may hold a password)."""
    try:
        yield
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
        _fail(f"the job store does not answer: {reason}", code=1)


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_upgrade(revision: str, as_json: bool) -> None:
    """Create or migrate the job store (run once per deployment, before the workers)."""
    store = _schema_store(_settings())
    try:
        with _reaching_store():
            before, after = upgrade_schema(store.engine, revision)
            store.account.ensure_row()
    except SchemaOutdated as exc:
        _fail(str(exc), code=1)
    finally:
        store.dispose()
    if as_json:
        _emit({"before": before.current, **_status_json(after)})
    elif before.current == after.current:
        click.echo(f"{after.describe()}: nothing to do")
    else:
        click.echo(
            f"job store schema upgraded from {before.current or 'nothing'} to {after.current}"
        )


def _show_status(as_json: bool) -> SchemaStatus:
    """Read the configured store's schema status and print it (one line, or JSON)."""
    store = _schema_store(_settings())
    try:
        with _reaching_store():
            status = schema_status(store.engine)
    finally:
        store.dispose()
    if as_json:
        _emit(_status_json(status))
    elif status.up_to_date:
        click.echo(status.describe())
    else:
        click.secho(f"{status.describe()}: run `tryon db upgrade`", fg="yellow", err=True)
    return status


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_current(as_json: bool) -> None:
    """Show the store's schema revision and the code's."""
    _show_status(as_json)


@db.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def db_check(as_json: bool) -> None:
    """Exit 0 when the store's schema is this code's, 1 when it is behind (or unknown)."""
    sys.exit(0 if _show_status(as_json).up_to_date else 1)


@db.command("revision")
@click.option("-m", "--message", required=True, help="What the revision changes.")
@click.option(
    "--autogenerate/--empty",
    default=True,
    show_default=True,
    help="Fill in what store/tables.py has and the head lacks, or write an empty revision.",
)
@click.option(
    "--database-url",
    default=None,
    help="Compare against this database (at head) instead of a scratch SQLite file.",
)
def db_revision(message: str, autogenerate: bool, database_url: str | None) -> None:
    """Write the next migration into store/migrations/versions/ (development; review it)."""
    path = new_revision(message, autogenerate=autogenerate, database_url=database_url)
    click.echo(str(path))


# ----------------------------------------------------------------------------- config
@main.group("config")
def config_group() -> None:
    """The service's settings."""


@config_group.command("env-example")
def config_env_example() -> None:
    """Print a .env.example: every TRYON_ variable, its description and its default."""
    click.echo(render_env_example(), nl=False)


@config_group.command("reference")
def config_reference() -> None:
    """Print the configuration reference (docs/configuration.md) in Markdown."""
    click.echo(render_configuration_reference(), nl=False)


if __name__ == "__main__":  # pragma: no cover
    main()
