"""`tryon db`: the job store's schema: create, migrate, check (Alembic revisions).

These commands are the schema step itself, so they open the store without the schema
check every other command goes through (cli/door.py `opened_store`); its errors end them
the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from kolors_tryon.cli import door
from kolors_tryon.config import Settings
from kolors_tryon.store import JobStore, SchemaStatus
from kolors_tryon.store.migrate import new_revision, schema_status, upgrade_schema

__all__ = ["db"]


@click.group()
def db() -> None:
    """The job store's schema: create, migrate, check (Alembic revisions in the package)."""


@contextmanager
def _unchecked_store(settings: Settings) -> Iterator[JobStore]:
    """The configured store without any schema step, disposed on exit."""
    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    with door.store_errors():
        store = JobStore.from_url(settings.effective_database_url)
        try:
            yield store
        finally:
            store.dispose()


def _status_json(status: SchemaStatus) -> dict[str, Any]:
    return {"current": status.current, "head": status.head, "up_to_date": status.up_to_date}


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@door.json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Create or migrate the job store (run once per deployment, before the workers)."""
    with _unchecked_store(door.command_settings()) as store:
        before, after = upgrade_schema(store.engine, revision)
        store.account.ensure_row()
    if as_json:
        door.emit({"before": before.current, **_status_json(after)})
    elif before.current == after.current:
        click.echo(f"{after.describe()}: nothing to do")
    else:
        click.echo(
            f"job store schema upgraded from {before.current or 'nothing'} to {after.current}"
        )


def _show_status(as_json: bool) -> SchemaStatus:
    """Read the configured store's schema status and print it (one line, or JSON)."""
    with _unchecked_store(door.command_settings()) as store:
        status = schema_status(store.engine)
    if as_json:
        door.emit(_status_json(status))
    elif status.up_to_date:
        click.echo(status.describe())
    else:
        click.secho(f"{status.describe()}: run `tryon db upgrade`", fg="yellow", err=True)
    return status


@db.command("current")
@door.json_option
def db_current(as_json: bool) -> None:
    """Show the store's schema revision and the code's."""
    _show_status(as_json)


@db.command("check")
@door.json_option
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
