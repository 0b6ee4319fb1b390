"""The ``tryon emulator`` command: run the Kling emulator in the foreground.

Every fault knob is an option, so a developer can rehearse a bad day of the real API
(throttling, outages, dropped connections, an exhausted account) without spending a
credit. Knobs can also be changed while it runs: ``POST {prefix}/_emulator/config``.
"""

from __future__ import annotations

import contextlib

import click

from kolors_tryon.emulator.config import EmulatorConfig
from kolors_tryon.emulator.server import EmulatorServer

_RATE = click.FloatRange(0.0, 1.0)


@click.command(name="emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0 picks a free one).",
)
@click.option(
    "--prefix",
    default="",
    show_default=True,
    help="Path prefix for every endpoint, as resellers mount the API (e.g. /kling).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    default=("sk-sandbox",),
    show_default=True,
    help="Static bearer key accepted, as resellers issue them (repeatable).",
)
@click.option("--access-key", default=None, help="Access key (AK): accept HS256 JWTs with iss=AK.")
@click.option("--secret-key", default=None, help="Secret key (SK) those JWTs are signed with.")
@click.option(
    "--concurrency",
    default=5,
    show_default=True,
    type=click.IntRange(0),
    help="Account's in-flight task limit; creates over it get 429 / 1303.",
)
@click.option(
    "--duration",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds a task takes (submitted for the first quarter, then processing).",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of tasks that end 'failed' (as content risk control would make them).",
)
@click.option(
    "--error-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of requests answered 500 / 5000 (a server outage).",
)
@click.option(
    "--throttle-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of requests answered 429 / 1302 (requests too fast).",
)
@click.option(
    "--retry-after",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Retry-After seconds sent with 1302 (0 sends no header).",
)
@click.option(
    "--slow-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of requests held --slow-seconds before the answer (a congested API).",
)
@click.option(
    "--slow-seconds",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="How long a slow request is held.",
)
@click.option(
    "--drop-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of creates whose task is made but whose connection closes unanswered "
    "(the ambiguous create a client must resolve by querying external_task_id).",
)
@click.option(
    "--index-lag",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds a new task stays invisible to lookup by external_task_id (404 / 1203) "
    "and to its uniqueness check (a repeated create makes a second task), as a lagging "
    "index would. Lookup by task_id works at once.",
)
@click.option(
    "--late-create-rate",
    default=0.0,
    show_default=True,
    type=_RATE,
    help="Fraction of creates processed after the client gave up: held "
    "--late-create-seconds with no task yet (lookup says 404), then the task is made "
    "and the answer goes to a closed connection.",
)
@click.option(
    "--late-create-seconds",
    default=35.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="How long a late create is held; keep it above the client's read timeout.",
)
@click.option(
    "--units-total",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Total units of the resource pack GET /account/costs reports; each succeeded "
    "task takes one from the remaining quantity.",
)
@click.option(
    "--account-costs/--no-account-costs",
    "account_costs_enabled",
    default=True,
    show_default=True,
    help="Serve GET /account/costs; --no-account-costs answers it 404 with a non-JSON "
    "body, like a reseller without the endpoint.",
)
@click.option(
    "--account-costs-min-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.0),
    help="Seconds between admitted GET /account/costs calls; sooner ones get 429 / 1302 "
    "(0 disables the limit).",
)
@click.option(
    "--account-error",
    default=None,
    type=click.Choice(["1100", "1101", "1102"]),
    help="Refuse every create with this 429 code: 1100 account exception, 1101 arrears, "
    "1102 resource pack used up. Queries still work.",
)
@click.option(
    "--create-error",
    default=None,
    type=int,
    help="Refuse every create with this business code of the error table (e.g. 1301), "
    "with its HTTP status: to try a client's error policy code by code.",
)
@click.option("--seed", default=None, type=int, help="Seed the fault dice for reproducible runs.")
@click.option(
    "--public-base-url",
    default=None,
    help="Base of result image URLs as clients reach it (e.g. http://emulator:8765 in "
    "docker compose, where the server itself listens on 0.0.0.0).",
)
def emulator_command(
    host: str,
    port: int,
    prefix: str,
    api_keys: tuple[str, ...],
    access_key: str | None,
    secret_key: str | None,
    concurrency: int,
    duration: float,
    fail_rate: float,
    error_rate: float,
    throttle_rate: float,
    retry_after: float,
    slow_rate: float,
    slow_seconds: float,
    drop_rate: float,
    index_lag: float,
    late_create_rate: float,
    late_create_seconds: float,
    units_total: float,
    account_costs_enabled: bool,
    account_costs_min_interval: float,
    account_error: str | None,
    create_error: int | None,
    seed: int | None,
    public_base_url: str | None,
) -> None:
    """Run the local Kling Kolors Virtual Try-On emulator until Ctrl-C."""
    if (access_key is None) != (secret_key is None):
        raise click.UsageError("--access-key and --secret-key go together")
    try:
        config = EmulatorConfig(
            host=host,
            port=port,
            prefix=prefix,
            api_keys=api_keys,
            access_key=access_key,
            secret_key=secret_key,
            concurrency_limit=concurrency,
            task_duration=duration,
            fail_rate=fail_rate,
            error_rate=error_rate,
            throttle_rate=throttle_rate,
            retry_after=retry_after if retry_after > 0 else None,
            slow_rate=slow_rate,
            slow_seconds=slow_seconds,
            drop_rate=drop_rate,
            index_lag=index_lag,
            late_create_rate=late_create_rate,
            late_create_seconds=late_create_seconds,
            units_total=units_total,
            account_costs_enabled=account_costs_enabled,
            account_costs_min_interval=account_costs_min_interval,
            account_error=int(account_error) if account_error else None,
            create_error=create_error,
            seed=seed,
            public_base_url=public_base_url,
        )
    except ValueError as exc:
        # Values click's ranges let through (inf, NaN) are still refused as usage errors.
        raise click.UsageError(str(exc)) from None
    credentials = f"Bearer {api_keys[0]}" if api_keys else "no static key"
    if access_key:
        credentials += f", or JWTs with iss={access_key}"

    def announce(url: str) -> None:
        # Printed after binding, so it carries the real port (--port 0 picks one).
        click.echo(f"Kling emulator listening on {url} (accepts {credentials}); Ctrl-C stops it")

    with contextlib.suppress(KeyboardInterrupt):
        EmulatorServer(config).serve_forever(ready=announce)
