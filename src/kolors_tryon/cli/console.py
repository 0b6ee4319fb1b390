"""`tryon console ...`: the review console's commands."""

from __future__ import annotations

import json
import sys

import click

__all__ = ["console_group"]


@click.group("console")
def console_group() -> None:
    """The review console (`tryon web`, /console): its users."""


@console_group.command("hash-password")
@click.option(
    "--name", default=None, help="Print a whole TRYON_CONSOLE_USERS entry for this user name."
)
@click.option("--producer", "producers", multiple=True, help="A producer the user may see.")
@click.option("--admin", is_flag=True, help="The user sees every producer's jobs.")
def hash_password_command(name: str | None, producers: tuple[str, ...], admin: bool) -> None:
    """Read a password (prompted, or one line on stdin) and print its argon2 hash.

    The password is never an argument: it would stay in the shell's history and in the
    process list.
    """
    from kolors_tryon.web.console.users import hash_password

    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        raise click.UsageError("the password must have 8 characters at least")
    hashed = hash_password(password)
    if name is None:
        click.echo(hashed)
        return
    entry: dict[str, object] = {"name": name, "password_hash": hashed}
    entry.update({"admin": True} if admin else {"producers": list(producers) or ["default"]})
    click.echo(json.dumps(entry))
