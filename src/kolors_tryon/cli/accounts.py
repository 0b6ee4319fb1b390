"""`tryon accounts`: the pool of Kling accounts (registered on `tryon` by cli.py)."""

from __future__ import annotations

import json

import click

from kolors_tryon.config import load_settings
from kolors_tryon.ops.pool_report import describe_accounts, pool_report
from kolors_tryon.store import JobStore

__all__ = ["accounts_command"]


@click.command("accounts")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account.")
@click.option(
    "--no-remote", is_flag=True, help="Do not ask the API for remaining units (no network)."
)
def accounts_command(as_json: bool, no_remote: bool) -> None:
    """Each Kling account of the pool: slots in use, pause, units, jobs created."""
    settings = load_settings()
    store = JobStore.from_url(settings.effective_database_url)
    try:
        rows = pool_report(settings, store, remote=not no_remote)
    finally:
        store.dispose()
    click.echo(json.dumps(rows, indent=2) if as_json else describe_accounts(rows))
