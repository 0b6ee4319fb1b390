"""`tryon config`: the service's settings as documentation (.env.example, the reference)."""

from __future__ import annotations

import click

from kolors_tryon.config.env_example import render_configuration_reference, render_env_example

__all__ = ["config_group"]


@click.group("config")
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
