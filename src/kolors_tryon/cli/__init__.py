"""The `tryon` command: run workers, put jobs on the queue, read their records.

One module per group of commands, as celery's `bin/` has; every command goes through
`door.py` for its settings, its `--json` output, its exits and the job store. This module
only gathers them under `main`, the console script's entry point (`tryon =
"kolors_tryon.cli:main"`); `python -m kolors_tryon.cli` runs it too.

    door.py           settings, output, exit codes, `opened_store()` and its errors
    checks.py         what is checked and said before acting (variables, broker login)
    running.py        worker, web, flower          ops.py         health, ping
    enqueue.py        submit, batch                validation.py  validate, schema
    following.py      --wait and the job lines     reading.py     status, jobs, results
    retention.py      purge, forget                webhooks.py    webhooks list|replay|secret
    database.py       db upgrade|current|check|revision
    configuration.py  config env-example|reference demo.py        demo
"""

from __future__ import annotations

import click

from kolors_tryon.cli.accounts import accounts_command
from kolors_tryon.cli.batches import batches as batches_group
from kolors_tryon.cli.configuration import config_group
from kolors_tryon.cli.console import console_group
from kolors_tryon.cli.database import db
from kolors_tryon.cli.demo import demo
from kolors_tryon.cli.enqueue import batch, submit
from kolors_tryon.cli.lifecycle import cancel_command, retry_command
from kolors_tryon.cli.ops import health, ping
from kolors_tryon.cli.reading import jobs, results, status
from kolors_tryon.cli.retention import forget, purge
from kolors_tryon.cli.running import flower, web, worker
from kolors_tryon.cli.validation import schema, validate
from kolors_tryon.cli.webhooks import webhooks
from kolors_tryon.emulator.command import emulator_command

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kolors-tryon: try-on jobs from RabbitMQ to the Kling Kolors Virtual Try-On API."""


for _command in (
    worker,
    flower,
    ping,
    web,
    submit,
    batch,
    validate,
    schema,
    health,
    status,
    jobs,
    results,
    purge,
    forget,
    webhooks,
    demo,
    db,
):
    main.add_command(_command)
main.add_command(emulator_command, name="emulator")
main.add_command(config_group, name="config")
main.add_command(console_group)
main.add_command(accounts_command)  # the pool of Kling accounts
main.add_command(batches_group, name="batches")
main.add_command(cancel_command, name="cancel")
main.add_command(retry_command, name="retry")
