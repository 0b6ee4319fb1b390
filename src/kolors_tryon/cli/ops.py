"""`tryon health` and `tryon ping`: is this deployment able to work, are its workers up."""

from __future__ import annotations

import sys

import click

from kolors_tryon.cli import door
from kolors_tryon.config.defaults import PING_TIMEOUT
from kolors_tryon.kling import redact

__all__ = ["health", "ping"]


@click.command()
@door.json_option
def health(as_json: bool) -> None:
    """Check the broker, the job store and the Kling credentials; exit 0 healthy, 1 not.

    Also reads the account's remaining units (a warning when low, unknown where the API
    lacks GET /account/costs). The container health check of the workers runs this.
    """
    from kolors_tryon.ops.health import Status, check_health
    from kolors_tryon.web.console import console_status

    settings = door.command_settings()
    report = check_health(settings)
    # The console is not a dependency: it is told about, and never makes the exit code.
    console = console_status(settings)
    if as_json:
        door.emit({**report.to_json_dict(), "console": str(console)})
    else:
        colours = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}
        lines = [(check.status, check.name, check.detail) for check in report.checks]
        lines.append((Status.OK if console.usable else Status.WARN, "console", console.detail))
        for status, name, detail in lines:
            mark = click.style(f"{status:<4}", fg=colours[status], bold=True)
            click.echo(f"{mark} {name}: {detail}")
        click.echo("healthy" if report.healthy else "UNHEALTHY")
    sys.exit(0 if report.healthy else 1)


@click.command()
@click.option(
    "--this-host",
    is_flag=True,
    help="Only workers of this machine (in a container: this container's worker).",
)
@click.option("--timeout", type=float, default=PING_TIMEOUT, show_default=True)
@door.json_option
def ping(this_host: bool, timeout: float, as_json: bool) -> None:
    """Ping the namespace's workers; exit 0 when one answers, 1 when none does.

    Through the namespace's control exchange, where the workers listen (`celery inspect
    ping` with a bare broker URL asks Celery's default one). The workers' container
    health check runs `tryon ping --this-host`.
    """
    from kolors_tryon.worker.nodes import on_this_host, ping_workers

    settings = door.command_settings()
    if not settings.uses_rabbitmq:
        door.fail(
            "tryon ping needs RabbitMQ (TRYON_BROKER_URL): an embedded broker has no remote "
            "control",
            door.EXIT_FAILED,
        )
    try:
        nodes = ping_workers(settings, timeout)
    except Exception as exc:
        door.fail(
            f"cannot reach the broker: {type(exc).__name__}: {redact(str(exc))}", door.EXIT_FAILED
        )
    if this_host:
        nodes = on_this_host(nodes)
    if as_json:
        door.emit({"namespace": settings.namespace, "nodes": nodes})
    elif nodes:
        for node in nodes:
            click.echo(f"{node}: pong")
    else:
        where = " on this host" if this_host else ""
        click.echo(
            f"no worker of namespace {settings.namespace!r} answered{where} in {timeout:g} s"
        )
    sys.exit(0 if nodes else 1)
