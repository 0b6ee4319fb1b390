"""The long-running processes: `tryon worker`, `tryon web` and `tryon flower`.

Their modules are imported inside the commands: Celery's app and the HTTP server are
heavy, and `tryon status` needs neither.
"""

from __future__ import annotations

import click

from kolors_tryon.cli import door
from kolors_tryon.cli.checks import broker_problem

__all__ = ["flower", "web", "worker"]

# Extra arguments go untouched to the program the command starts (Celery's worker, Flower).
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.command(context_settings=PASS_THROUGH)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a worker; extra arguments go to Celery's worker (e.g. --concurrency 4)."""
    from kolors_tryon.worker.launcher import run_worker

    settings = door.command_settings()
    door.say_fallbacks(settings)
    refused = broker_problem(settings)
    if refused is not None:
        door.fail(refused, code=door.EXIT_FAILED)
    run_worker(settings, list(celery_args))


@click.command(context_settings=PASS_THROUGH)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    """Run Flower on this deployment's workers and tasks (the [flower] extra); extra
    arguments go to Flower (e.g. --port=5555)."""
    from kolors_tryon.worker.launcher import run_flower

    run_flower(door.command_settings(), list(flower_args))


@click.command()
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
    from kolors_tryon.web.console import ConsoleMisconfigured

    try:
        serve(
            door.command_settings(),
            host=host,
            port=port,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
        )
    except ConsoleMisconfigured as exc:  # refuse to start rather than serve an open door
        door.fail(str(exc), code=1)
