"""`tryon webhooks`: a job's deliveries (the default), `replay`, and the signing `secret`."""

from __future__ import annotations

from dataclasses import asdict

import click

from kolors_tryon.cli import door
from kolors_tryon.jobs.urls import redact_url

__all__ = ["webhooks"]


class _ListByDefault(click.Group):
    """`tryon webhooks JOB_ID` means `tryon webhooks list JOB_ID`: a group with a default."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ListByDefault)
def webhooks() -> None:
    """Webhook deliveries: `tryon webhooks JOB_ID` (list), `replay`, `secret`."""


@webhooks.command("list")
@click.argument("job_id")
@door.json_option
def webhooks_list(job_id: str, as_json: bool) -> None:
    """Show a job's webhook deliveries and every attempt of each."""
    with door.opened_store(door.command_settings()) as store:
        deliveries = store.webhooks.of_job(job_id)
    shown = [{**asdict(d), "url": redact_url(d.url)} for d in deliveries]
    if as_json:
        door.emit(shown)
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
        door.fail("give a DELIVERY_ID or --job JOB_ID")
    from kolors_tryon.tasks.messaging import send_webhooks
    from kolors_tryon.worker import create_app

    settings = door.command_settings()
    with door.opened_store(settings) as store:
        ids = [delivery_id] if delivery_id else store.webhooks.replayable(job_id or "")
        replayed = [d for d in ids if d is not None and store.webhooks.replay(d)]
    if not replayed:
        door.fail(
            "nothing to replay: no such delivery, or it is pending or delivered", door.EXIT_FAILED
        )
    send_webhooks(create_app(settings), replayed)
    for d in replayed:
        click.echo(f"replaying {d}")


@webhooks.command("secret")
def webhooks_secret() -> None:
    """Print the whsec_ secret(s) webhooks are signed with (generated once if unset)."""
    from kolors_tryon.pipeline.webhooks import webhook_secrets

    settings = door.command_settings()
    with door.opened_store(settings) as store:
        for secret in webhook_secrets(settings, store):
            click.echo(secret)
