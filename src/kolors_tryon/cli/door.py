"""The one door every `tryon` command goes through: settings, output, exits, the store.

Written once here so that each command says the same thing the same way: a wrong
variable, a broker that refuses us, a store whose schema is behind the code or that does
not answer all end in one line on stderr and a known exit code, never a traceback.

Exit codes: 0 done, 1 the world is not as asked (a job not found, a dependency down, a
schema behind), 2 the input is wrong (EXIT_INVALID, as click's own usage errors).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, NoReturn

import click
from kombu import Connection
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import SQLAlchemyError

from kolors_tryon.cli.checks import broker_refusal, embedded_fallbacks, unknown_variables
from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.errors import JobNotFound
from kolors_tryon.kling import redact
from kolors_tryon.store import JobStore, SchemaOutdated, open_store
from kolors_tryon.store.outage import is_outage

__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "command_settings",
    "emit",
    "fail",
    "json_option",
    "opened_store",
    "reaching_broker",
    "say_fallbacks",
    "store_errors",
]

EXIT_FAILED: Final = 1
EXIT_INVALID: Final = 2

# The `--json` flag of every command that has one: the same name, flag and help everywhere.
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def fail(message: str, code: int = EXIT_INVALID) -> NoReturn:
    """Say what went wrong on one line of stderr and end the command with `code`."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def emit(data: Any) -> None:
    """The machine-readable answer of a command: indented, sorted JSON on stdout."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def command_settings() -> Settings:
    """The settings of this run, after a warning per unknown `TRYON_` variable; exit 2
    naming the variable when one is wrong."""
    for warning in unknown_variables(os.environ):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def say_fallbacks(settings: Settings, *, broker: bool = True, store: bool = True) -> None:
    """One line on stderr when the command uses the embedded broker or store."""
    line = embedded_fallbacks(settings, broker=broker, store=store)
    if line is not None:
        click.secho(f"note: {line}", fg="cyan", err=True)


@contextmanager
def reaching_broker(settings: Settings) -> Iterator[None]:
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
        fail(line, code=EXIT_FAILED)
    except Exception as exc:
        line = broker_refusal(exc, settings)
        if line is None:
            raise
        fail(line, code=EXIT_FAILED)


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's own words, first line only: never the URL (it may hold a password)."""
    return str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn what the job store refuses into one line and exit 1.

    A schema behind (or ahead of) the code says what to run, a missing job says which,
    and a store that does not answer, or refuses a statement, says so in the driver's
    words: an operator's mistake or an outage, not a bug worth a traceback.
    """
    try:
        yield
    except (SchemaOutdated, JobNotFound) as exc:
        fail(str(exc), code=EXIT_FAILED)
    except SQLAlchemyError as exc:
        verb = "does not answer" if is_outage(exc) else "refused the command"
        fail(f"the job store {verb}: {_first_line(exc)}", code=EXIT_FAILED)


@contextmanager
def opened_store(settings: Settings) -> Iterator[JobStore]:
    """The job store, its schema always checked (embedded: upgraded), disposed on exit.

    The errors of opening and of the block (`raise JobNotFound(job_id)` included) end the
    command as `store_errors` says.
    """
    with store_errors():
        store = open_store(settings)
        try:
            yield store
        finally:
            store.dispose()
